"""Numbered, immutable SQL migration files (applied by obscura.store.migrate)."""
