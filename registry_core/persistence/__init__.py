"""Postgres (asyncpg): migrations, named queries, the read model and the projection."""
