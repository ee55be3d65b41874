"""Golden checks of the obscura.v1 schema against spec §3.1: names, numbers, types, encodings."""

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor as F

from obscura._proto import obscura_pb2 as pb
from obscura._speedups import WireReader

BYTES, STRING, ENUM, MSG = F.TYPE_BYTES, F.TYPE_STRING, F.TYPE_ENUM, F.TYPE_MESSAGE
REPEATED = "repeated"
SINGLE = "single"

# message full name -> {field name: (number, type, cardinality, message/enum type or None)}
EXPECTED = {
    "obscura.v1.SendMessageRequest": {
        "messages": (1, MSG, REPEATED, "obscura.v1.SendMessageRequest.Submission")},
    "obscura.v1.SendMessageRequest.Submission": {
        "submission_id": (1, BYTES, SINGLE, None), "device_id": (2, BYTES, SINGLE, None),
        "message": (3, BYTES, SINGLE, None)},
    "obscura.v1.SendMessageResponse": {
        "failed_submissions": (1, MSG, REPEATED, "obscura.v1.SendMessageResponse.FailedSubmission")},
    "obscura.v1.SendMessageResponse.FailedSubmission": {
        "submission_id": (1, BYTES, SINGLE, None),
        "error_code": (2, ENUM, SINGLE, "obscura.v1.SendMessageResponse.ErrorCode"),
        "error_message": (3, STRING, SINGLE, None)},
    "obscura.v1.WebSocketFrame": {
        "ack": (11, MSG, SINGLE, "obscura.v1.AckMessage"),
        "pre_key_status": (12, MSG, SINGLE, "obscura.v1.PreKeyStatus"),
        "envelope_batch": (13, MSG, SINGLE, "obscura.v1.EnvelopeBatch")},
    "obscura.v1.AckMessage": {"message_ids": (1, BYTES, REPEATED, None)},
    "obscura.v1.PreKeyStatus": {
        "one_time_pre_key_count": (1, F.TYPE_INT32, SINGLE, None),
        "min_threshold": (2, F.TYPE_INT32, SINGLE, None)},
    "obscura.v1.EnvelopeBatch": {"envelopes": (1, MSG, REPEATED, "obscura.v1.Envelope")},
    "obscura.v1.Envelope": {
        "id": (1, BYTES, SINGLE, None), "sender_id": (2, BYTES, SINGLE, None),
        "timestamp": (3, F.TYPE_UINT64, SINGLE, None), "message": (4, BYTES, SINGLE, None),
        "sender_device_id": (5, BYTES, SINGLE, None)},
}


def _all_messages(descriptors):
    for d in descriptors:
        yield d
        yield from _all_messages(d.nested_types)


def _describe(field):
    sub = field.message_type or field.enum_type
    cardinality = REPEATED if field.is_repeated else SINGLE
    return field.number, field.type, cardinality, sub.full_name if sub else None


def test_file_package_and_java_options():
    file = pb.DESCRIPTOR
    assert file.name == "obscura/v1/obscura.proto" and file.package == "obscura.v1"
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert proto.options.java_package == "xyz.obscura.server.contracts"
    assert proto.options.java_outer_classname == "ObscuraProtocol"


def test_every_message_field_name_number_and_type():
    messages = {d.full_name: d for d in _all_messages(pb.DESCRIPTOR.message_types_by_name.values())}
    assert set(messages) == set(EXPECTED)
    for full_name, fields in EXPECTED.items():
        actual = {f.name: _describe(f) for f in messages[full_name].fields}
        assert actual == fields, full_name


def test_error_code_enum():
    enum = pb.SendMessageResponse.ErrorCode.DESCRIPTOR
    assert {v.name: v.number for v in enum.values} == {
        "ERROR_CODE_UNSPECIFIED": 0, "ERROR_CODE_INVALID_DEVICE": 1,
        "ERROR_CODE_MALFORMED_DEVICE_ID": 2, "ERROR_CODE_MALFORMED_SUBMISSION_ID": 3,
        "ERROR_CODE_MESSAGE_MISSING": 4}


def test_frame_payload_is_a_oneof_without_field_10():
    frame = pb.WebSocketFrame.DESCRIPTOR
    assert [o.name for o in frame.oneofs] == ["payload"]
    assert [f.name for f in frame.oneofs_by_name["payload"].fields] == [
        "ack", "pre_key_status", "envelope_batch"]
    assert 10 not in frame.fields_by_number


def test_pre_key_status_frame_writes_only_field_2_and_the_oneof_tag():
    status = pb.PreKeyStatus(one_time_pre_key_count=0, min_threshold=20)
    data = pb.WebSocketFrame(pre_key_status=status).SerializeToString()
    assert data == b"\x62\x02\x10\x14"  # field 12 (LEN 2) { field 2 = 20 }; field 1 omitted
    reader = WireReader(data)
    assert reader.read_tag() == (12, 2)
    assert reader.read_length_delimited() == (2, 4)
    assert WireReader(data, 2).read_tag() == (2, 0)


def test_empty_sub_message_still_writes_the_oneof_tag():
    frame = pb.WebSocketFrame(pre_key_status=pb.PreKeyStatus(one_time_pre_key_count=0,
                                                             min_threshold=0))
    assert frame.SerializeToString() == b"\x62\x00"
    assert pb.WebSocketFrame(envelope_batch=pb.EnvelopeBatch()).SerializeToString() == b"\x6a\x00"


def test_empty_send_message_response_is_empty_bytes():
    assert pb.SendMessageResponse().SerializeToString() == b""


def test_seed_field_10_frame_decodes_as_no_payload():
    seed_envelope = b"\x0a\x10" + bytes(16)  # Envelope{id=...}
    data = b"\x52" + bytes([len(seed_envelope)]) + seed_envelope  # field 10, LEN
    frame = pb.WebSocketFrame.FromString(data)
    assert frame.WhichOneof("payload") is None


@pytest.mark.parametrize("count,threshold,expected", [
    (5, 20, b"\x62\x04\x08\x05\x10\x14"), (0, 0, b"\x62\x00")])
def test_pre_key_status_vectors(count, threshold, expected):
    status = pb.PreKeyStatus(one_time_pre_key_count=count, min_threshold=threshold)
    assert pb.WebSocketFrame(pre_key_status=status).SerializeToString() == expected


def test_envelope_field_order_and_bytes():
    envelope = pb.Envelope(id=b"\x01" * 16, sender_id=b"\x02" * 16, timestamp=1_700_000_000_000,
                           message=b"ct", sender_device_id=b"\x03" * 16)
    data = pb.EnvelopeBatch(envelopes=[envelope]).SerializeToString()
    reader = WireReader(data)
    assert reader.read_tag() == (1, 2)
    start, end = reader.read_length_delimited()
    inner = WireReader(data, start)
    seen = []
    while inner.pos < end:
        number, wire_type = inner.read_tag()
        seen.append(number)
        inner.skip_field(wire_type, number)
    assert seen == [1, 2, 3, 4, 5]
