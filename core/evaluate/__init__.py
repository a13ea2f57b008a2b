"""Evaluation: embeddings, probes, metrics, reports."""
