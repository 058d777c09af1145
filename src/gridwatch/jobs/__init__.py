"""Jobs: stream computations that consume the bus and publish their results back to it."""
