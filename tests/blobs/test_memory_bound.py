"""A 40 MiB body streams through every backend with memory far below its size."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Awaitable
from typing import TypeVar

from tests.blobs.conftest import Backend
from tests.blobs.sources import MiB, Source, digest_of

T = TypeVar("T")
BODY_BYTES = 40 * MiB
# Generous (parts in flight, allocator slack) yet far below the 40 MiB body.
RSS_LIMIT_BYTES = 24 * MiB
PY_HEAP_LIMIT_BYTES = 24 * MiB


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def _peak_memory(work: Awaitable[T]) -> tuple[T, int, int]:
    """(result, peak RSS growth, peak Python heap growth) while ``work`` runs."""
    gc.collect()
    base = _rss_bytes()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        result = await work
        _current, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        sampler.join()
    return result, max(peak, _rss_bytes()) - base, py_peak


async def test_forty_mib_put_and_get_keep_memory_bounded(backend: Backend) -> None:
    src = Source(BODY_BYTES, 64 * 1024, seed=40)
    size, put_rss, put_py = await _peak_memory(
        backend.store.put_stream("attachments/huge", src, max_bytes=50 * MiB, content_length=BODY_BYTES))
    assert size == BODY_BYTES
    blob = await backend.store.get_stream("attachments/huge")
    assert blob.size == BODY_BYTES
    (digest, total, _largest), get_rss, get_py = await _peak_memory(digest_of(blob))
    assert (digest, total) == (src.digest, BODY_BYTES)
    print(f"{backend.kind}: put rss +{put_rss / MiB:.1f} MiB py {put_py / MiB:.1f} MiB; "
          f"get rss +{get_rss / MiB:.1f} MiB py {get_py / MiB:.1f} MiB")
    if backend.kind == "memory":
        return  # MemoryStore holds the whole body and hands it back in one piece, by design
    assert put_rss < RSS_LIMIT_BYTES and get_rss < RSS_LIMIT_BYTES
    assert put_py < PY_HEAP_LIMIT_BYTES and get_py < PY_HEAP_LIMIT_BYTES
