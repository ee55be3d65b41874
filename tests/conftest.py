"""Test-suite wiring: the shared fixtures live in tests/fixtures/ as plugins."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.server",
]
