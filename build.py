"""Build steps the package needs beyond plain Python: gRPC stubs and Cython extensions.

``setup.py`` runs these during ``pip install .`` and ``pip install -e .``; a developer can run
``python build.py`` to regenerate stubs and compile extensions in place.

* Stubs: every ``protos/**/*.proto`` is compiled with ``grpc_tools.protoc`` into the
  ``crosspark.v1`` package (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``), which git ignores.
* Extensions: every ``*.pyx`` under the product packages becomes an extension module of the same
  dotted name, compiled against NumPy's headers.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "protos"
PACKAGES = ("crosspark", "card_service", "settlement", "lot_node", "recognition_core")
STUB_PACKAGE = ROOT / "crosspark" / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate_stubs() -> list[Path]:
    """Compile the protos into ``crosspark/v1``; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    protos = proto_files()
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_ROOT}")
    STUB_PACKAGE.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    # protoc resolves relative proto paths against -I; run from the proto root.
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(args[5:]))
    init = STUB_PACKAGE / "__init__.py"
    init.write_text('"""Generated from protos/crosspark/v1 by build.py; do not edit."""\n')
    (STUB_PACKAGE / "py.typed").write_text("")
    return sorted(STUB_PACKAGE.glob("*_pb2*.py*"))


def pyx_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.pyx"))


def extensions() -> list:
    """The Cython extensions, cythonized (an empty list when there is no ``.pyx``)."""
    files = pyx_files()
    if not files:
        return []
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    exts = [
        Extension(
            ".".join(p.relative_to(ROOT).with_suffix("").parts),
            [str(p.relative_to(ROOT))],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O3"],
        )
        for p in files
    ]
    return cythonize(exts, language_level=3, quiet=True)


def build_in_place() -> None:
    """Regenerate stubs and compile every extension into the source tree."""
    generate_stubs()
    from setuptools import Distribution

    dist = Distribution({"ext_modules": extensions()})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.ensure_finalized()
    cmd.run()


if __name__ == "__main__":
    build_in_place()
    sys.exit(0)
