"""Results: the versioned schema (schema.py) and the atomic Parquet store (store.py)."""
