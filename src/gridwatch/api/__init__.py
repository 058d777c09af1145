"""HTTP: health, metrics, ingestion and query routes, and the dashboard."""
