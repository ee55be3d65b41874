"""Obscura: a zero-knowledge relay for Signal-protocol messaging."""

__version__ = "0.1.0"
