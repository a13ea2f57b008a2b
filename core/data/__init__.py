"""The data pipeline: recordings to epochs in WebDataset shards."""
