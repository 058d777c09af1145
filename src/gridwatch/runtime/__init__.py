"""The runtime: the one publish path, the one consume loop, supervision and telemetry."""
