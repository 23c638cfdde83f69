"""`digest-rag train`: adapt an embedding model to the digests (pairs.py, static.py, trainer.py, card.py)."""
