"""WireError: the one exception both twins of obscura._speedups.wire raise for malformed input."""


class WireError(ValueError):
    """Malformed protobuf wire data: truncated, overlong or overflowing varint, bad tag, bad group.

    One class shared by the compiled and the pure-Python twin, so ``except WireError`` works
    whichever implementation the selector picked.
    """
