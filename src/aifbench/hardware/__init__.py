"""Hardware knowledge: what this node has (detect) and what its datasheets promise (catalog)."""
