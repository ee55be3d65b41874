"""DecodeError: the one exception both twins of obscura._speedups.frames raise for undecodable frames."""

from obscura._speedups.wire_error import WireError


class DecodeError(WireError):
    """A WebSocketFrame or SendMessageRequest that upb would refuse to parse.

    The text follows prost's (the upstream decoder, spec §2.10) shape, ``failed to decode Protobuf
    message: <Message.field: >*<description>``, innermost field first, so the send endpoint can
    answer ``Invalid SendMessageRequest protobuf: <text>``. Defined outside the twins so that
    ``except DecodeError`` works whichever twin the selector picked; a WireError and a ValueError.
    """
