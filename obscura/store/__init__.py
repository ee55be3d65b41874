"""Storage: repository interfaces, PostgreSQL implementation (postgres/), migrations, embedded PostgreSQL."""
