"""An index directory on disk: layout, generations, the writer lock, the SQLite store."""
