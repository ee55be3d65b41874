"""Atheris fuzz targets (style.md §14); each target's check() is also replayed by the test suite."""
