"""WebSocket frame codec and SendMessageRequest decoder, straight on the protobuf wire format: Python twin.

Single-source twin (style.md §4): Cython compiles this very file, with the C types of
``frames_c.pxd``, into ``obscura._speedups.frames_c``. Keep it plain Python (no ``import cython``, no
argument annotations); bounds are checked by hand because the extension runs without boundscheck.

Schema: spec §3.1 (``obscura.v1``). Encoders write the bytes upb's ``SerializeToString`` writes:
fields in number order, proto3 defaults left out, the oneof tag always written. Decoders accept
exactly what upb's ``ParseFromString`` accepts (tests/speedups/test_frames_golden.py checks it):
- unknown fields are skipped, and so is a known field sent with the wrong wire type (upb keeps it
  as an unknown field); unknown groups are skipped up to their matching end tag;
- upb shares one depth budget of 100 between sub-messages and groups;
- a varint may have 10 bytes whose last one carries bits above 2**64: upb drops them. prost (the
  upstream decoder) and our ``wire`` module reject such a varint; here upb's rule wins so that both
  twins agree with the runtime the tests compare against. Only hostile clients write them;
- a tag has at most 5 bytes and fits in uint32; field number 0 (except inside an unknown group,
  where upb's group skipper lets it through), wire types 6 and 7 and a stray end-group tag are
  malformed; a length has at most 5 bytes (upb refuses even a padded 6-byte
  zero, which prost and our ``wire`` module accept), is below 2**31-1 and fits in the enclosing
  message;
- a repeated message field appends, a oneof member seen twice is merged (so two ``ack`` fields give
  all their ids), and a different oneof member replaces the previous one.
Every nested message is checked, including members the server ignores (pre_key_status and
envelope_batch sent by a client), because upb refuses the whole frame when any part is malformed.
The old field 10 (spec §3.1) is unknown at HEAD: skipped without looking inside.

Inputs may be bytes, bytearray or a 1-D memoryview of unsigned bytes in every function.
"""

import operator

from obscura._speedups.frames_error import DecodeError

__all__ = [
    "DecodeError", "KIND_ACK", "KIND_OTHER", "KIND_NONE", "encode_envelope",
    "encode_envelope_batch_frame", "split_batches", "encode_prekey_status_frame",
    "decode_client_frame", "decode_send_message_request", "encode_send_message_response",
]

KIND_ACK = "ack"      # payload: list of the raw message_ids, any length (spec §3.5 checks them)
KIND_OTHER = "other"  # payload: the oneof member's name, "pre_key_status" or "envelope_batch"
KIND_NONE = "none"    # no oneof member (also an old field-10 frame, spec §3.1); payload None

_DEPTH_LIMIT = 100  # upb's default decode depth (sub-messages plus groups)
_UINT64_MASK = 0xFFFFFFFFFFFFFFFF
_SIGN_EXTEND = 0xFFFFFFFFFFFFFFFF  # a C constant in the compiled twin: int32 -> uint64 without objects
_SIZE_CAP = 1 << 62
_SUBMISSION_FIELDS = ("", "submission_id", "device_id", "message")


class _Malformed(Exception):
    """Internal: a decode failure on its way out, collecting prost's (message, field) stack."""

    def __init__(self, description):
        Exception.__init__(self, description)
        self.description = description
        self.stack = []

    def text(self):
        where = "".join([f"{message}.{field}: " for message, field in self.stack])
        return f"failed to decode Protobuf message: {where}{self.description}"


def _buffer(data):
    """bytes/bytearray as they are; any other buffer as a 1-D unsigned-byte memoryview."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    view = memoryview(data)  # TypeError for None, str, int, ...
    if view.ndim != 1 or view.format != "B":
        raise ValueError(f"expected a 1-D buffer of unsigned bytes, got format {view.format!r} "
                         f"with {view.ndim} dimension(s)")
    return view


def _as_bytes(data):
    # Decoders read bytes: the ids they return are slices, and a picows payload view is only
    # valid during its callback anyway.
    if type(data) is bytes:
        return data
    return bytes(_buffer(data))


class _Reader:
    """A bounds-checked cursor over one message; ``_end`` is the end of the message being read."""

    def __init__(self, data):
        self._data = data
        self._p = data  # compiled twin: a const unsigned char* into _data
        self._pos = 0
        self._end = len(data)

    def varint(self):
        p = self._p
        pos = self._pos
        end = self._end
        if pos >= end:
            raise _Malformed("invalid varint")
        byte = p[pos]
        pos += 1
        if byte < 0x80:
            self._pos = pos
            return byte
        result = byte & 0x7F
        shift = 7
        while True:
            if pos >= end:
                raise _Malformed("invalid varint")
            byte = p[pos]
            pos += 1
            part = byte & 0x7F
            if shift == 63:
                # The 10th byte: upb keeps its lowest bit and drops the rest (see the docstring).
                if byte >= 0x80:
                    raise _Malformed("invalid varint")
                part = byte & 1
                result |= part << 63
                self._pos = pos
                return result
            result |= part << shift
            if byte < 0x80:
                self._pos = pos
                return result
            shift += 7

    def tag(self):
        """The next tag, field_number << 3 | wire_type, checked as upb checks it."""
        pos = self._pos
        if pos < self._end:
            byte = self._p[pos]
            if byte < 0x80:  # one-byte tags: every field of the schema
                self._pos = pos + 1
                if byte < 8:
                    raise _Malformed("invalid tag value: 0")
                if (byte & 7) > 5:
                    raise _Malformed(f"invalid wire type value: {byte & 7}")
                return byte
        tag = self.group_tag()
        if tag < 8:
            raise _Malformed("invalid tag value: 0")
        return tag

    def group_tag(self):
        """A tag inside an unknown group: upb skips groups with a laxer reader that lets field
        number 0 through (``1b 00 00 1c`` parses), but still refuses wire types 6 and 7."""
        pos = self._pos
        tag = self.varint()
        if tag > 0xFFFFFFFF or self._pos - pos > 5:
            raise _Malformed(f"invalid key value: {tag}")
        if (tag & 7) > 5:
            raise _Malformed(f"invalid wire type value: {tag & 7}")
        return tag

    def length(self):
        """End of the length-delimited payload that starts at the cursor (moved past the prefix)."""
        start = self._pos
        size = self.varint()
        if self._pos - start > 5:  # upb reads lengths as 32-bit varints: even padding is refused
            raise _Malformed("invalid length delimiter")
        remaining = self._end - self._pos
        if size >= 0x7FFFFFFF or size > remaining:
            raise _Malformed("buffer underflow")
        return self._pos + size

    def skip(self, tag, depth):
        """Skip the value of an unknown field whose tag was just read."""
        wire_type = tag & 7
        if wire_type == 0:
            self.varint()
        elif wire_type == 2:
            self._pos = self.length()
        elif wire_type == 1 or wire_type == 5:
            count = 8 if wire_type == 1 else 4
            if self._end - self._pos < count:
                raise _Malformed("buffer underflow")
            self._pos += count
        elif wire_type == 3:
            self.skip_group(tag >> 3, depth)
        else:
            raise _Malformed("unexpected end group tag")

    def skip_group(self, field_number, depth):
        # Iterative: a hostile nesting costs a list, never the C stack. Each open group spends one
        # unit of the depth budget, as in upb.
        open_groups = [field_number]
        depth -= 1
        while True:
            if depth < 0:
                raise _Malformed("recursion limit reached")
            tag = self.group_tag()
            wire_type = tag & 7
            if wire_type == 4:
                if (tag >> 3) != open_groups[len(open_groups) - 1]:  # wraparound is off
                    raise _Malformed("unexpected end group tag")
                open_groups.pop()
                depth += 1
                if not open_groups:
                    return
            elif wire_type == 3:
                open_groups.append(tag >> 3)
                depth -= 1
            else:
                self.skip(tag, depth)

    def walk(self, end, depth):
        """Check a message of scalar fields only (PreKeyStatus, Envelope) up to end.

        With every field either a scalar or unknown, checking it is skipping every field: a known
        field of the wrong wire type is an unknown field to upb.
        """
        if depth < 0:
            raise _Malformed("recursion limit reached")
        outer = self._end
        self._end = end
        while self._pos < end:
            self.skip(self.tag(), depth)
        self._end = outer


# --- decoding ------------------------------------------------------------------------------------

def decode_client_frame(data):
    """(kind, payload) of a WebSocketFrame from a client (spec §3.3 "Incoming frame", §3.5).

    ("ack", [message_id, ...]) with the raw ids of every ``ack`` member merged in order;
    ("other", "pre_key_status" | "envelope_batch"); ("none", None). DecodeError when upb would
    refuse the frame.
    """
    reader = _Reader(_as_bytes(data))
    kind = KIND_NONE
    payload = None
    field = 0
    try:
        while reader._pos < reader._end:
            field = 0
            tag = reader.tag()
            if tag == 0x5A:  # 11 ack, length-delimited
                field = 11
                end = reader.length()
                if kind is not KIND_ACK:  # a different member before: protobuf merge replaces it
                    kind = KIND_ACK
                    payload = []
                _read_ack(reader, end, payload)
            elif tag == 0x62:  # 12 pre_key_status
                field = 12
                reader.walk(reader.length(), _DEPTH_LIMIT - 1)
                kind = KIND_OTHER
                payload = "pre_key_status"
            elif tag == 0x6A:  # 13 envelope_batch
                field = 13
                _check_envelope_batch(reader, reader.length())
                kind = KIND_OTHER
                payload = "envelope_batch"
            else:
                reader.skip(tag, _DEPTH_LIMIT)
    except _Malformed as exc:
        if field:
            exc.stack.append(("WebSocketFrame", ("ack", "pre_key_status", "envelope_batch")[field - 11]))
        raise DecodeError(exc.text()) from None
    return kind, payload


def _read_ack(reader, end, ids):
    outer = reader._end
    reader._end = end
    field = 0
    try:
        while reader._pos < end:
            field = 0
            tag = reader.tag()
            if tag == 0x0A:  # 1 message_ids
                field = 1
                stop = reader.length()
                ids.append(reader._p[reader._pos:stop])
                reader._pos = stop
            else:
                reader.skip(tag, _DEPTH_LIMIT - 1)
    except _Malformed as exc:
        if field:
            exc.stack.append(("AckMessage", "message_ids"))
        raise
    reader._end = outer


def _check_envelope_batch(reader, end):
    outer = reader._end
    reader._end = end
    try:
        while reader._pos < end:
            tag = reader.tag()
            if tag == 0x0A:  # 1 envelopes
                reader.walk(reader.length(), _DEPTH_LIMIT - 2)
            else:
                reader.skip(tag, _DEPTH_LIMIT - 1)
    except _Malformed as exc:
        exc.stack.append(("EnvelopeBatch", "envelopes"))
        raise
    reader._end = outer


def decode_send_message_request(data):
    """[(submission_id, device_id, message), ...] of a POST /v1/messages body (spec §2.10, §5.1).

    A field a submission does not carry is b"". DecodeError (text as prost's) when upb would refuse.
    """
    reader = _Reader(_as_bytes(data))
    submissions = []
    field = 0
    try:
        while reader._pos < reader._end:
            field = 0
            tag = reader.tag()
            if tag == 0x0A:  # 1 messages
                field = 1
                submissions.append(_read_submission(reader, reader.length()))
            else:
                reader.skip(tag, _DEPTH_LIMIT)
    except _Malformed as exc:
        if field:
            exc.stack.append(("SendMessageRequest", "messages"))
        raise DecodeError(exc.text()) from None
    return submissions


def _read_submission(reader, end):
    outer = reader._end
    reader._end = end
    values = [b"", b"", b""]  # submission_id, device_id, message; a repeated scalar: last one wins
    field = 0
    try:
        while reader._pos < end:
            field = 0
            tag = reader.tag()
            if tag == 0x0A or tag == 0x12 or tag == 0x1A:
                field = tag >> 3
                stop = reader.length()
                values[field - 1] = reader._p[reader._pos:stop]
                reader._pos = stop
            else:
                reader.skip(tag, _DEPTH_LIMIT - 1)
    except _Malformed as exc:
        if field:
            exc.stack.append(("Submission", _SUBMISSION_FIELDS[field]))
        raise
    reader._end = outer
    return (values[0], values[1], values[2])


# --- encoding ------------------------------------------------------------------------------------
# Encoders size the output first and fill one preallocated bytearray through a memoryview: growing
# a bytearray while appending reallocates and copies every few fields, and assigning a bytes slice
# to a bytearray copies the source once more; both dominated the batch frame.

def _varint_size(value):
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _put_varint(out, pos, value):
    """Write value as a varint into out at pos; the position after it."""
    while value >= 0x80:
        out[pos] = (value & 0x7F) | 0x80
        value >>= 7
        pos += 1
    out[pos] = value
    return pos + 1


def _field_size(size):
    # proto3: an empty bytes field is the default and is not written at all
    return 1 + _varint_size(size) + size if size else 0


def _put_bytes_field(out, window, pos, tag, view):
    """Write a non-empty bytes field at pos (window: a memoryview of out); the position after it."""
    size = len(view)
    if not size:
        return pos
    out[pos] = tag
    pos = _put_varint(out, pos + 1, size)
    # Through the memoryview: bytearray slice assignment first copies a non-bytearray source.
    window[pos:pos + size] = view
    return pos + size


def _append_varint(buf, value):
    while value >= 0x80:
        buf.append((value & 0x7F) | 0x80)
        value >>= 7
    buf.append(value)


def _uint64(value):
    if type(value) is not int:
        if type(value) is bool:  # upb refuses booleans for integer fields
            raise TypeError("expected an int, got a boolean")
        value = operator.index(value)
    if value < 0 or value > _UINT64_MASK:
        raise ValueError(f"uint64 value out of range: {value}")
    return value


def _int32_as_uint64(value):
    """An int32 as its varint payload: negatives are sign-extended to 64 bits, as upb writes them."""
    if type(value) is not int:
        if type(value) is bool:
            raise TypeError("expected an int, got a boolean")
        value = operator.index(value)
    if value < -0x80000000 or value > 0x7FFFFFFF:
        raise ValueError(f"int32 value out of range: {value}")
    small = value
    return small & _SIGN_EXTEND


def encode_envelope(id16, sender_id16, timestamp_ms, message, sender_device_id16):
    """The Envelope message (spec §3.1, §3.4 step 4): fields 1-5 in order, empty ones left out."""
    id_view = _buffer(id16)
    sender_view = _buffer(sender_id16)
    message_view = _buffer(message)
    device_view = _buffer(sender_device_id16)
    timestamp = _uint64(timestamp_ms)
    size = (_field_size(len(id_view)) + _field_size(len(sender_view))
            + _field_size(len(message_view)) + _field_size(len(device_view)))
    if timestamp:
        size += 1 + _varint_size(timestamp)
    out = bytearray(size)
    with memoryview(out) as window:
        pos = _put_bytes_field(out, window, 0, 0x0A, id_view)
        pos = _put_bytes_field(out, window, pos, 0x12, sender_view)
        if timestamp:
            out[pos] = 0x18
            pos = _put_varint(out, pos + 1, timestamp)
        pos = _put_bytes_field(out, window, pos, 0x22, message_view)
        _put_bytes_field(out, window, pos, 0x2A, device_view)
    return bytes(out)


def encode_envelope_batch_frame(envelopes):
    """WebSocketFrame{envelope_batch{envelopes}} around already encoded Envelope messages.

    The envelopes are spliced in as they are, never re-encoded (issue 8: pre-serialized bytes);
    each one is a repeated entry, so even an empty envelope is written (as ``0a 00``).
    """
    views = [_buffer(envelope) for envelope in envelopes]
    body_size = 0
    for view in views:
        size = len(view)
        body_size += 1 + _varint_size(size) + size
    out = bytearray(1 + _varint_size(body_size) + body_size)
    out[0] = 0x6A  # 13 envelope_batch: the oneof tag is written even for an empty batch
    pos = _put_varint(out, 1, body_size)
    with memoryview(out) as window:
        for view in views:
            size = len(view)
            out[pos] = 0x0A
            pos = _put_varint(out, pos + 1, size)
            window[pos:pos + size] = view
            pos += size
    return bytes(out)


def split_batches(envelopes, max_bytes):
    """Envelopes cut into EnvelopeBatch-sized runs (spec §3.4 step 5).

    The running sum counts each envelope's encoded length only (no per-entry framing); a new batch
    starts when the next envelope would take the sum over max_bytes and the current batch is not
    empty, so an envelope larger than max_bytes travels alone.
    """
    requested = operator.index(max_bytes)
    # Clamped so the compiled twin's C sizes never overflow; no sum of real lengths reaches 2**62,
    # and every limit below 0 behaves like -1 (one envelope per batch).
    limit = -1 if requested < -1 else (requested if requested < _SIZE_CAP else _SIZE_CAP)
    batches = []
    batch = []
    total = 0
    for envelope in envelopes:
        size = len(envelope)
        if batch and total + size > limit:
            batches.append(batch)
            batch = []
            total = 0
        batch.append(envelope)
        total += size
    if batch:
        batches.append(batch)
    return batches


def encode_prekey_status_frame(count, threshold):
    """WebSocketFrame{pre_key_status{count, threshold}} (spec §3.3, §3.6); the oneof tag is written
    even when both values are 0 and the sub-message is empty."""
    count_varint = _int32_as_uint64(count)
    threshold_varint = _int32_as_uint64(threshold)
    body_size = 0
    if count_varint:
        body_size += 1 + _varint_size(count_varint)
    if threshold_varint:
        body_size += 1 + _varint_size(threshold_varint)
    out = bytearray(2 + body_size)  # body_size <= 22: a one-byte length
    out[0] = 0x62
    out[1] = body_size
    pos = 2
    if count_varint:
        out[pos] = 0x08
        pos = _put_varint(out, pos + 1, count_varint)
    if threshold_varint:
        out[pos] = 0x10
        _put_varint(out, pos + 1, threshold_varint)
    return bytes(out)


def encode_send_message_response(failures):
    """SendMessageResponse{failed_submissions} from (submission_id, error_code, error_message)
    triples in the order given (spec §5.1); no failures encode as b""."""
    out = bytearray()
    for submission_id, error_code, error_message in failures:
        if not isinstance(error_message, str):
            raise TypeError(f"error_message must be str, not {type(error_message).__name__}")
        code_varint = _int32_as_uint64(error_code)
        id_view = _buffer(submission_id)
        text = error_message.encode("utf-8")
        item_size = _field_size(len(id_view)) + _field_size(len(text))
        if code_varint:
            item_size += 1 + _varint_size(code_varint)
        item = bytearray(item_size)
        with memoryview(item) as window:
            pos = _put_bytes_field(item, window, 0, 0x0A, id_view)
            if code_varint:
                item[pos] = 0x10
                pos = _put_varint(item, pos + 1, code_varint)
            _put_bytes_field(item, window, pos, 0x1A, text)
        out.append(0x0A)
        _append_varint(out, len(item))
        out += item
    return bytes(out)
