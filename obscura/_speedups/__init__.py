"""_speedups."""
