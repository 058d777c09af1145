"""Transforms: pure functions over batches of records, between sources and the bus."""
