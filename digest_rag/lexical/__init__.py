"""Korean-aware BM25: analysis, the index and its score matrix, the mined lexicon, the word table, feedback."""
