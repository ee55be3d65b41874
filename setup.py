"""Build: compiles the Cython twins in obscura/_speedups unless OBSCURA_NO_EXTENSIONS=1.

Single-source twins (style.md §4): ``obscura/_speedups/<name>_py.py`` is ordinary typed Python and
the reference implementation; ``<name>_c.pxd`` adds C types. At build time the ``_py.py`` source is
copied to ``build/cython/.../<name>_c.py`` beside its ``.pxd`` and compiled into the extension
``obscura._speedups.<name>_c``. No ``_c.py`` exists in the source tree, so importing ``<name>_c``
succeeds only when the compiled module was really built.
"""

import os
import pathlib
import shutil

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
SPEEDUPS = HERE / "obscura" / "_speedups"
NO_EXTENSIONS = os.environ.get("OBSCURA_NO_EXTENSIONS", "") not in ("", "0")


def _extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    stage = HERE / "build" / "cython" / "obscura" / "_speedups"
    stage.mkdir(parents=True, exist_ok=True)
    exts = []
    for pxd in sorted(SPEEDUPS.glob("*_c.pxd")):
        name = pxd.name[: -len("_c.pxd")]
        source = SPEEDUPS / f"{name}_py.py"
        if not source.exists():
            raise RuntimeError(f"{pxd.name} has no pure-Python twin {source.name}")
        staged = stage / f"{name}_c.py"
        shutil.copyfile(source, staged)
        shutil.copyfile(pxd, stage / pxd.name)
        exts.append(Extension(f"obscura._speedups.{name}_c", [str(staged.relative_to(HERE))],
                              extra_compile_args=["-O2"]))
    return cythonize(exts, language_level=3, quiet=True,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "embedsignature": True})


setup(ext_modules=_extensions())
