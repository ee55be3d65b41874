"""Hot paths: picks the compiled Cython twin of each module, or its pure-Python twin, and re-exports it.

Each ``<name>_py.py`` is compiled from the same source into ``<name>_c`` (style.md §4). Selection:
- ``OBSCURA_NO_EXTENSIONS=1``: always the Python twins (also what ``setup.py`` honours);
- ``OBSCURA_REQUIRE_EXTENSIONS=1``: a compiled module that does not import is an ImportError;
- otherwise the compiled twin when it imports, else the Python twin with a warning.

Import the functions from here, never from a twin directly: uuid7 keeps its monotonic state per
module, so mixing twins in one process would break the ordering promise.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = [
    "COMPILED", "MODULES", "implementations",
    # wire
    "WireError", "WireReader", "decode_varint", "read_tag", "read_length_delimited", "skip_field",
    "encode_varint", "write_varint", "encode_bytes_field", "write_bytes_field",
    "WIRETYPE_VARINT", "WIRETYPE_FIXED64", "WIRETYPE_LENGTH_DELIMITED", "WIRETYPE_START_GROUP",
    "WIRETYPE_END_GROUP", "WIRETYPE_FIXED32", "MAX_FIELD_NUMBER", "MAX_GROUP_DEPTH",
    # uuid7
    "uuid7", "uuid7_bytes", "uuid7_int", "uuid7_time_ms",
    # frames
    "DecodeError", "KIND_ACK", "KIND_OTHER", "KIND_NONE", "encode_envelope",
    "encode_envelope_batch_frame", "split_batches", "encode_prekey_status_frame",
    "decode_client_frame", "decode_send_message_request", "encode_send_message_response",
]

MODULES = ("wire", "uuid7", "frames")

_log = logging.getLogger(__name__)


def _flag(name: str) -> bool:
    # Same truth rule as setup.py: unset, empty and "0" are off.
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("OBSCURA_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("OBSCURA_REQUIRE_EXTENSIONS")


def _import_twin(name: str, suffix: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}_{suffix}")


def _select(name: str) -> tuple[ModuleType, bool]:
    if NO_EXTENSIONS:
        return _import_twin(name, "py"), False
    try:
        return _import_twin(name, "c"), True
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                f"OBSCURA_REQUIRE_EXTENSIONS=1 but the compiled module {__name__}.{name}_c did not "
                f"load ({exc}); build it with `pip install -e .` or `python setup.py build_ext "
                f"--inplace`, or unset OBSCURA_REQUIRE_EXTENSIONS") from exc
        _log.warning("compiled %s.%s_c not available (%s); using the pure-Python twin",
                     __name__, name, exc)
        return _import_twin(name, "py"), False


_selected: dict[str, ModuleType] = {}
COMPILED: dict[str, bool] = {}
for _name in MODULES:
    _selected[_name], COMPILED[_name] = _select(_name)
del _name


def implementations(name: str) -> dict[str, ModuleType]:
    """Both twins of a module for tests: {"py": ..., "c": ...}; "c" only when it was built and
    OBSCURA_NO_EXTENSIONS is off."""
    if name not in MODULES:
        raise KeyError(f"unknown speedups module {name!r}; known: {', '.join(MODULES)}")
    twins = {"py": _import_twin(name, "py")}
    if not NO_EXTENSIONS:
        try:
            twins["c"] = _import_twin(name, "c")
        except ImportError:
            pass
    return twins


_wire = _selected["wire"]
WireError = _wire.WireError
WireReader = _wire.WireReader
decode_varint = _wire.decode_varint
read_tag = _wire.read_tag
read_length_delimited = _wire.read_length_delimited
skip_field = _wire.skip_field
encode_varint = _wire.encode_varint
write_varint = _wire.write_varint
encode_bytes_field = _wire.encode_bytes_field
write_bytes_field = _wire.write_bytes_field
WIRETYPE_VARINT = _wire.WIRETYPE_VARINT
WIRETYPE_FIXED64 = _wire.WIRETYPE_FIXED64
WIRETYPE_LENGTH_DELIMITED = _wire.WIRETYPE_LENGTH_DELIMITED
WIRETYPE_START_GROUP = _wire.WIRETYPE_START_GROUP
WIRETYPE_END_GROUP = _wire.WIRETYPE_END_GROUP
WIRETYPE_FIXED32 = _wire.WIRETYPE_FIXED32
MAX_FIELD_NUMBER = _wire.MAX_FIELD_NUMBER
MAX_GROUP_DEPTH = _wire.MAX_GROUP_DEPTH

_uuid7 = _selected["uuid7"]
uuid7 = _uuid7.uuid7
uuid7_bytes = _uuid7.uuid7_bytes
uuid7_int = _uuid7.uuid7_int
uuid7_time_ms = _uuid7.uuid7_time_ms

_frames = _selected["frames"]
DecodeError = _frames.DecodeError
KIND_ACK = _frames.KIND_ACK
KIND_OTHER = _frames.KIND_OTHER
KIND_NONE = _frames.KIND_NONE
encode_envelope = _frames.encode_envelope
encode_envelope_batch_frame = _frames.encode_envelope_batch_frame
split_batches = _frames.split_batches
encode_prekey_status_frame = _frames.encode_prekey_status_frame
decode_client_frame = _frames.decode_client_frame
decode_send_message_request = _frames.decode_send_message_request
encode_send_message_response = _frames.encode_send_message_response
