"""The local-folder backend: obstore's LocalStore (temp file + atomic rename on every put)."""

from __future__ import annotations

import asyncio
import os

from obstore.store import LocalStore

from obscura.blobs.obstore_store import ObstoreBlobStore

__all__ = ["LocalBlobStore"]


class LocalBlobStore(ObstoreBlobStore):
    """Blobs as files under one folder (the embedded default, decisions §5).

    obstore writes each upload to a staging file beside the target and renames it into place on
    completion, deleting the staging file on failure or cancellation, so readers never see a
    partial object. The local filesystem has no content-type metadata: ``content_type`` reads
    back as ``None``.
    """

    def __init__(self, root: str, **kwargs: object) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        # automatic_cleanup removes folders left empty by deletes (backups/<device>/).
        store = LocalStore(self.root, mkdir=True, automatic_cleanup=True)
        super().__init__(
            store, name=self.root, supports_attributes=False, bulk_delete_ignores_missing=False,
            sorted_listing=False, **kwargs,
        )

    async def _probe(self) -> None:
        await asyncio.to_thread(self._probe_sync)

    def _probe_sync(self) -> None:
        if not os.path.isdir(self.root):
            raise FileNotFoundError("blob folder does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError("blob folder is not writable")
