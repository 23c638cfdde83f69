"""The query side: a checked request, the retrievers, fusion and snippets."""
