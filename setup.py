"""Hooks build.py into setuptools: stubs before build_py, Cython extensions as ext_modules."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_spec = importlib.util.spec_from_file_location("_crosspark_build", Path(__file__).with_name("build.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)


class BuildPyWithStubs(build_py):
    def run(self):
        _build.generate_stubs()
        # Packages are discovered before the stubs exist on a fresh clone; add them now.
        if "crosspark.v1" not in self.packages:
            self.packages.append("crosspark.v1")
        super().run()


setup(ext_modules=_build.extensions(), cmdclass={"build_py": BuildPyWithStubs})
