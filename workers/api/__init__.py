"""The read API (FastAPI): queries, client config, health, and waiting for command outcomes."""
