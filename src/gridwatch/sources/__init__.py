"""Sources: one module or package per kind of system that records come from."""
