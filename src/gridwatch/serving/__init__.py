"""gridwatch serving."""
