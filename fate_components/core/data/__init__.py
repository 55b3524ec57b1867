"""A site's candidates and annotations, its memory-mapped patch dataset, and per-epoch negative sampling."""
