"""The twin selector: compiled modules really load, and the environment switches behave."""

import importlib.machinery
import os
import subprocess
import sys

import pytest

from obscura import _speedups

NO_EXTENSIONS = os.environ.get("OBSCURA_NO_EXTENSIONS", "") not in ("", "0")


@pytest.mark.parametrize("name", _speedups.MODULES)
def test_compiled_module_loaded_or_python_forced(name):
    py_twin = importlib.import_module(f"obscura._speedups.{name}_py")
    if NO_EXTENSIONS:
        assert _speedups.COMPILED[name] is False
        assert set(_speedups.implementations(name)) == {"py"}
        assert _speedups._selected[name] is py_twin
        return
    assert _speedups.COMPILED[name], (
        f"compiled module did not load: obscura._speedups.{name}_c (build it with "
        f"`pip install -e .` or `python setup.py build_ext --inplace`, or set OBSCURA_NO_EXTENSIONS=1)")
    twins = _speedups.implementations(name)
    assert set(twins) == {"py", "c"}
    assert twins["c"].__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert _speedups._selected[name] is twins["c"]


def test_exports_come_from_the_selected_twins():
    wire = _speedups._selected["wire"]
    uuid7 = _speedups._selected["uuid7"]
    assert _speedups.decode_varint is wire.decode_varint
    assert _speedups.WireReader is wire.WireReader
    assert _speedups.uuid7 is uuid7.uuid7
    assert _speedups.uuid7_bytes is uuid7.uuid7_bytes
    # One exception class whichever twin raises it.
    for twin in _speedups.implementations("wire").values():
        assert twin.WireError is _speedups.WireError


def test_unknown_module_name():
    with pytest.raises(KeyError):
        _speedups.implementations("nope")


def _run(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OBSCURA_NO_EXTENSIONS", "OBSCURA_REQUIRE_EXTENSIONS")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


# Makes the compiled wire twin unimportable, as if it had not been built.
_BLOCK_WIRE_C = "import sys; sys.modules['obscura._speedups.wire_c'] = None\n"


def test_no_extensions_switch_forces_python():
    result = _run("from obscura import _speedups as s\n"
                  "assert set(s.COMPILED) == set(s.MODULES) and not any(s.COMPILED.values()), s.COMPILED\n"
                  "assert s.uuid7.__module__ == 'obscura._speedups.uuid7_py'\n"
                  "assert set(s.implementations('wire')) == {'py'}\n",
                  OBSCURA_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr


def test_require_extensions_makes_a_missing_module_fatal():
    result = _run(_BLOCK_WIRE_C + "import obscura._speedups", OBSCURA_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "ImportError: OBSCURA_REQUIRE_EXTENSIONS=1 but the compiled module " \
           "obscura._speedups.wire_c did not load" in result.stderr


def test_missing_module_falls_back_with_a_warning():
    result = _run(_BLOCK_WIRE_C + "from obscura import _speedups as s\n"
                  "assert s.COMPILED['wire'] is False\n"
                  "assert s.decode_varint.__module__ == 'obscura._speedups.wire_py'\n")
    assert result.returncode == 0, result.stderr
    assert "compiled obscura._speedups.wire_c not available" in result.stderr
    assert "using the pure-Python twin" in result.stderr


def test_switch_value_zero_means_off():
    result = _run("from obscura import _speedups as s; print(s.NO_EXTENSIONS, s.REQUIRE_EXTENSIONS)",
                  OBSCURA_NO_EXTENSIONS="0", OBSCURA_REQUIRE_EXTENSIONS="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
