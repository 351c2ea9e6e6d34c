"""Storage: one SQLite file (WAL), a single batching writer, readers on worker threads."""
