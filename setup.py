"""Builds ascope's one compiled module, ``ascope._speedups`` (Cython), when it can.

Everything else is in pyproject.toml. The module is optional: where it cannot be built
(no C compiler, not Linux, or ``ASCOPE_NO_EXTENSIONS=1`` at install time) ascope installs
and runs as pure Python, with the same behaviour and a slower hot path.
"""

import hashlib
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile leaves the pure-Python implementation in charge, with a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no headers...
            self._skip(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            self._skip(error)

    @staticmethod
    def _skip(error: Exception) -> None:
        print(f"ascope: the compiled module was not built ({error}); "
              "pure Python is used instead", file=sys.stderr)


def extensions() -> list[Extension]:
    if (os.environ.get("ASCOPE_NO_EXTENSIONS", "").lower() not in ("", "0", "false", "no")
            or not sys.platform.startswith("linux")):
        return []
    if sys.implementation.name != "cpython":
        return []
    try:
        from Cython.Build import cythonize

        with open("ascope/_speedups.pyx", "rb") as source:
            digest = hashlib.sha256(source.read()).hexdigest()
        # The module carries the hash of its source; the runtime compares it with the
        # .pyx beside it and ignores a module built from another version.
        extension = Extension("ascope._speedups", ["ascope/_speedups.pyx"],
                              define_macros=[("ASCOPE_SOURCE_HASH", f'"{digest}"')])
        return cythonize([extension], quiet=True, compiler_directives={"language_level": 3})
    except Exception as error:  # Cython missing or the translation failed
        OptionalBuildExt._skip(error)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
