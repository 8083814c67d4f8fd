"""The aiohttp application and its HTTP endpoints: ingest routes, admin API, health, metrics."""
