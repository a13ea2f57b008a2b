"""efm's built-in plugins: readers, tokenizers, backbones and objectives."""
