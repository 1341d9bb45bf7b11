"""The package build: a wheel carries the generated stubs (with type stubs) and the compiled
extensions, and nothing generated is tracked by git."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_stubs_and_compiled_extensions(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*command, str(REPO)], check=True, capture_output=True, timeout=600)
    [wheel] = tmp_path.glob("crosspark-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for proto in ("common", "cards", "admin", "settlement", "gate"):
        assert f"crosspark/v1/{proto}_pb2.py" in names
        assert f"crosspark/v1/{proto}_pb2.pyi" in names
        assert f"crosspark/v1/{proto}_pb2_grpc.py" in names
    pyx = sorted(p.relative_to(REPO).with_suffix("") for p in REPO.glob("recognition_core/**/*.pyx"))
    assert pyx, "no Cython kernels found"
    for module in pyx:
        assert any(n.startswith(str(module) + ".") and n.endswith(".so") for n in names), module
    assert any(n.startswith("recognition_core/weights/") for n in names)
    assert "crosspark/migrations/platform/env.py" in names and "crosspark/migrations/platform/script.py.mako" in names


def test_generated_files_are_not_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not [n for n in tracked.splitlines() if n.startswith("crosspark/v1/") or n.endswith((".so", ".c"))]
