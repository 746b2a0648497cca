"""Content owners' side: parse, chunk, embed and incrementally index policy documents."""
