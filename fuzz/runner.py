"""The atheris entry point every target shares (imported only when a target runs as a script)."""

import os
import sys
from collections.abc import Callable


def run_fuzzer(check: Callable[[bytes], object]) -> None:
    import atheris  # only the fuzzer needs it; check() runs in the test suite without it

    if not os.environ.get("OBSCURA_FUZZ_UNINSTRUMENTED"):
        # Coverage guidance; instrumenting every loaded module takes ~25 s, so the short CI run
        # (make fuzz-ci) mutates the seeds without it.
        atheris.instrument_all()
    atheris.Setup(sys.argv, lambda data: check(bytes(data)))
    atheris.Fuzz()
