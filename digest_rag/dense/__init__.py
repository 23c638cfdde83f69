"""The dense side: model resolution and files, encoder runtimes, the embedding cache, the FAISS index, training."""
