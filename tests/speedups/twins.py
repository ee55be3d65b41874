"""Parameter sets over the twins of each speedups module (the compiled one only when it loads)."""

import pytest

from obscura import _speedups

WIRE_TWINS = [pytest.param(mod, id=label) for label, mod in _speedups.implementations("wire").items()]
UUID7_TWINS = [pytest.param(mod, id=label) for label, mod in _speedups.implementations("uuid7").items()]

# The same bytes as every input type the twins must treat alike (style.md §4).
FORMS = [pytest.param(bytes, id="bytes"), pytest.param(bytearray, id="bytearray"),
         pytest.param(lambda raw: memoryview(bytes(raw)), id="memoryview")]
