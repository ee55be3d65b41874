"""Protobuf wire-format primitives (varints, tags, length-delimited fields, skipping): Python twin.

Single-source twin (style.md §4): this file is the reference implementation and Cython compiles the
very same source, with the C types of ``wire_c.pxd``, into ``obscura._speedups.wire_c``. Keep it
plain Python: no ``import cython`` (Cython is not a runtime dependency) and no argument annotations
(Cython would read them as C types and the twins would accept different inputs). Bounds are
checked by hand on every read because the extension is built with boundscheck/wraparound off.

Decoding rules (protobuf encoding spec; spec §3.1 for the frames that use them) are those of the
upstream server's decoder (prost) and of upb (the protobuf runtime this project installs):
- a varint has at most 10 bytes and must fit in uint64. upb silently drops the excess bits of a
  10th byte above 0x01; prost rejects it, and so do we;
- a tag is a varint of at most 5 bytes whose value fits in uint32; field number 0 and wire types
  6 and 7 are malformed;
- an unknown group (wire type 3, deprecated) is NOT rejected: upb (and prost) skip it up to the
  end-group tag with the same field number, groups nested at most 100 deep; a stray or mismatched
  end-group tag is malformed;
- a length prefix must be below INT32_MAX (upb) and must fit in the remaining input.

Every input may be bytes, bytearray or a 1-D memoryview of unsigned bytes; both twins accept and
reject exactly the same inputs (``_as_byte_buffer``).
"""

import operator

from obscura._speedups.wire_error import WireError

__all__ = [
    "WIRETYPE_VARINT", "WIRETYPE_FIXED64", "WIRETYPE_LENGTH_DELIMITED", "WIRETYPE_START_GROUP",
    "WIRETYPE_END_GROUP", "WIRETYPE_FIXED32", "MAX_FIELD_NUMBER", "MAX_GROUP_DEPTH", "WireError",
    "WireReader", "decode_varint", "read_tag", "read_length_delimited", "skip_field",
    "encode_varint", "write_varint", "encode_bytes_field", "write_bytes_field",
]

WIRETYPE_VARINT = 0
WIRETYPE_FIXED64 = 1
WIRETYPE_LENGTH_DELIMITED = 2
WIRETYPE_START_GROUP = 3
WIRETYPE_END_GROUP = 4
WIRETYPE_FIXED32 = 5
MAX_FIELD_NUMBER = (1 << 29) - 1
MAX_GROUP_DEPTH = 100  # upb's default decode depth limit; 101 nested groups are malformed

_UINT64_LIMIT = 1 << 64
_INT64_MIN = -(1 << 63)
_ONE_BYTE_VARINTS = tuple(bytes((i,)) for i in range(128))


def _as_byte_buffer(data):
    """bytes/bytearray as they are; any other buffer as a 1-D unsigned-byte memoryview."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    view = memoryview(data)  # TypeError for None, str, int, list, ...
    if view.ndim != 1 or view.format != "B":
        raise ValueError(f"expected a 1-D buffer of unsigned bytes, got format {view.format!r} "
                         f"with {view.ndim} dimension(s)")
    return view


def _to_uint64(value):
    """value as the uint64 protobuf writes: negatives become 64-bit two's complement (int32/int64)."""
    if type(value) is not int:
        value = operator.index(value)  # bool, IntEnum, numpy ints; TypeError for float, str, None
    if value < 0:
        if value < _INT64_MIN:
            raise ValueError("varint value out of range [-2**63, 2**64)")
        value += _UINT64_LIMIT
    elif value >= _UINT64_LIMIT:
        raise ValueError("varint value out of range [-2**63, 2**64)")
    return value


class WireReader:
    """A bounds-checked cursor over one protobuf message; every read advances ``pos``.

    The buffer is acquired once, so a decoder walking a whole frame should use one reader rather
    than the module-level functions (which build a reader per call).
    """

    def __init__(self, data, pos=0):
        if type(pos) is not int:
            pos = operator.index(pos)
        self._view = _as_byte_buffer(data)
        self._end = len(self._view)
        if pos < 0 or pos > self._end:
            raise WireError(f"position {pos} outside the buffer of {self._end} bytes")
        self._pos = pos

    @property
    def pos(self):
        return self._pos

    @property
    def end(self):
        return self._end

    def at_end(self):
        return self._pos >= self._end

    def seek(self, pos):
        """Move the cursor, e.g. back to the start of a sub-message read_length_delimited skipped."""
        if type(pos) is not int:
            pos = operator.index(pos)
        if pos < 0 or pos > self._end:
            raise WireError(f"position {pos} outside the buffer of {self._end} bytes")
        self._pos = pos

    def read_varint(self):
        view = self._view
        pos = self._pos
        end = self._end
        if pos >= end:
            raise WireError("truncated varint")
        byte = view[pos]
        pos += 1
        if byte < 0x80:
            self._pos = pos
            return byte
        result = byte & 0x7F
        shift = 7
        while True:
            if pos >= end:
                raise WireError("truncated varint")
            byte = view[pos]
            pos += 1
            if shift == 63 and byte > 1:
                raise WireError("varint longer than 10 bytes or above 2**64-1")
            part = byte & 0x7F
            result |= part << shift
            if byte < 0x80:
                self._pos = pos
                return result
            shift += 7

    def read_tag(self):
        """(field_number, wire_type); rejects field 0, wire types 6/7 and over-long tags."""
        start = self._pos
        tag = self.read_varint()
        if tag > 0xFFFFFFFF or self._pos - start > 5:
            raise WireError("tag longer than 5 bytes or above 2**32-1")
        field_number = tag >> 3
        wire_type = tag & 7
        if field_number == 0:
            raise WireError("field number 0")
        if wire_type > 5:
            raise WireError(f"invalid wire type {wire_type}")
        return field_number, wire_type

    def read_length_delimited(self):
        """(start, end) of the payload of a length-delimited field; the cursor moves past it."""
        length = self.read_varint()
        remaining = self._end - self._pos
        if length >= 0x7FFFFFFF or length > remaining:
            raise WireError("length-delimited field runs past the end of the input")
        start = self._pos
        self._pos = start + length
        return start, self._pos

    def skip_field(self, wire_type, field_number=0):
        """Skip the value of an unknown field whose tag was just read (groups need field_number)."""
        if wire_type == 0:
            self.read_varint()
        elif wire_type == 2:
            self.read_length_delimited()
        elif wire_type == 1:
            self._advance(8)
        elif wire_type == 5:
            self._advance(4)
        elif wire_type == 3:
            self._skip_group(field_number)
        elif wire_type == 4:
            raise WireError("end-group tag without a matching start-group tag")
        else:
            raise WireError(f"invalid wire type {wire_type}")

    def _advance(self, count):
        if self._end - self._pos < count:
            raise WireError("truncated fixed-width field")
        self._pos += count

    def _skip_group(self, field_number):
        # Iterative, so a hostile nesting depth costs a list, never the C stack.
        if field_number < 1 or field_number > 0x1FFFFFFF:  # MAX_FIELD_NUMBER
            raise WireError(f"group with invalid field number {field_number}")
        open_groups = [field_number]
        while True:
            number, wire_type = self.read_tag()
            if wire_type == 4:
                if number != open_groups[len(open_groups) - 1]:  # no negative index: wraparound is off
                    raise WireError("end-group tag does not match the open group")
                open_groups.pop()
                if not open_groups:
                    return
            elif wire_type == 3:
                if len(open_groups) >= MAX_GROUP_DEPTH:
                    raise WireError("groups nested too deeply")
                open_groups.append(number)
            else:
                self.skip_field(wire_type)


def decode_varint(data, pos):
    """(value, new_pos) of the varint at data[pos]; WireError if truncated, > 10 bytes or > uint64."""
    reader = WireReader(data, pos)
    value = reader.read_varint()
    return value, reader._pos


def read_tag(data, pos):
    """(field_number, wire_type, new_pos) of the tag at data[pos]."""
    reader = WireReader(data, pos)
    field_number, wire_type = reader.read_tag()
    return field_number, wire_type, reader._pos


def read_length_delimited(data, pos):
    """(start, end, new_pos) of the length-prefixed payload at data[pos] (new_pos == end)."""
    reader = WireReader(data, pos)
    start, end = reader.read_length_delimited()
    return start, end, end


def skip_field(data, pos, wire_type, field_number=0):
    """new_pos after the value of an unknown field that starts at data[pos] (after its tag)."""
    reader = WireReader(data, pos)
    reader.skip_field(wire_type, field_number)
    return reader._pos


def write_varint(buf, value):
    """Append value as a varint to the bytearray buf (negatives as 10-byte two's complement)."""
    _check_bytearray(buf)
    _append_varint(buf, _to_uint64(value))


def _check_bytearray(buf):
    # Checked by hand in both twins: a typed bytearray argument in Cython would still let None in.
    if type(buf) is not bytearray:
        raise TypeError(f"expected a bytearray to append to, not {type(buf).__name__}")


def _append_varint(buf, v):
    while v >= 0x80:
        buf.append((v & 0x7F) | 0x80)
        v >>= 7
    buf.append(v)


def encode_varint(value):
    """value as varint bytes."""
    v = _to_uint64(value)
    if v < 0x80:
        return _ONE_BYTE_VARINTS[v]
    out = bytearray()
    _append_varint(out, v)
    return bytes(out)


def write_bytes_field(buf, field_number, value):
    """Append a length-delimited field (tag, length, value) to the bytearray buf.

    Always written, even when value is empty: proto3 omission of defaults is the caller's choice
    (a repeated bytes entry such as AckMessage.message_ids must be written even if empty).
    """
    _check_bytearray(buf)
    if field_number < 1 or field_number > 0x1FFFFFFF:  # MAX_FIELD_NUMBER
        raise ValueError(f"field number {field_number} outside 1..2**29-1")
    payload = _as_byte_buffer(value)
    _append_varint(buf, (field_number << 3) | 2)
    _append_varint(buf, len(payload))
    buf += payload


def encode_bytes_field(field_number, value):
    """A length-delimited field (tag, length, value) as bytes."""
    out = bytearray()
    write_bytes_field(out, field_number, value)
    return bytes(out)
