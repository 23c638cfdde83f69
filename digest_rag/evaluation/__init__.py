"""Query sets, metrics and corpus variants for measuring search quality."""
