"""Benchmarks, the end-to-end load driver and the CI regression gate (performance.md)."""
