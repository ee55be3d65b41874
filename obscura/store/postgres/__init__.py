"""PostgreSQL (asyncpg): the pool, readiness check and, later, the repository implementations."""
