"""A 40 MiB attachment through the whole node (HTTP in, blob store, HTTP out) with bounded memory."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
import tracemalloc

from tests.storage.conftest import Node

MiB = 1024 * 1024
BODY_BYTES = 40 * MiB
CHUNK_BYTES = 64 * 1024
# Generous (socket buffers, parts in flight, allocator slack) yet far below the 40 MiB body.
PY_HEAP_LIMIT_BYTES = 24 * MiB
RSS_LIMIT_BYTES = 32 * MiB


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class _Peak:
    """Peak RSS growth (sampled by a thread) and peak traced Python heap while the block runs."""

    def __enter__(self) -> _Peak:
        gc.collect()
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        tracemalloc.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        _cur, self.py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self._stop.set()
        self._thread.join()
        self.rss = max(self.peak, _rss_bytes()) - self.base


def _block(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * (CHUNK_BYTES // 32)


async def _source():
    for i in range(BODY_BYTES // CHUNK_BYTES):
        yield _block(i)


async def test_forty_mib_attachment_streams_with_bounded_memory(node: Node):
    dev = await node.device()
    expected = hashlib.sha256()
    for i in range(BODY_BYTES // CHUNK_BYTES):
        expected.update(_block(i))
    with _Peak() as up:
        res = await node.http.post("/v1/attachments", content=_source(),
                                   headers={**dev.auth, "Content-Length": str(BODY_BYTES)})
    assert res.status_code == 201, res.text
    att_id = res.json()["id"]
    got, total = hashlib.sha256(), 0
    with _Peak() as down:
        async with node.http.stream("GET", f"/v1/attachments/{att_id}", headers=dev.auth) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-length"] == str(BODY_BYTES)
            async for chunk in stream.aiter_raw():
                got.update(chunk)
                total += len(chunk)
    assert (total, got.hexdigest()) == (BODY_BYTES, expected.hexdigest())
    print(f"{node.kind}: upload rss +{up.rss / MiB:.1f} MiB py {up.py_peak / MiB:.1f} MiB; "
          f"download rss +{down.rss / MiB:.1f} MiB py {down.py_peak / MiB:.1f} MiB")
    assert up.py_peak < PY_HEAP_LIMIT_BYTES and down.py_peak < PY_HEAP_LIMIT_BYTES
    assert up.rss < RSS_LIMIT_BYTES and down.rss < RSS_LIMIT_BYTES
