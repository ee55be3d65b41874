"""The in-memory backend: obstore's MemoryStore, for tests and throwaway nodes."""

from __future__ import annotations

from obstore.store import MemoryStore

from obscura.blobs.obstore_store import ObstoreBlobStore

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(ObstoreBlobStore):
    """Blobs held in this process's memory; lost on exit. Always ready."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(MemoryStore(), name="memory", **kwargs)
