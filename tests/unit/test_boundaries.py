"""Import boundaries: edge never imports hub, tui or textual; hub never imports tui; the wire contract stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

FORBIDDEN = {
    "edge": {"hub", "tui", "textual", "rollcall"},
    "hub": {"tui", "textual", "rollcall"},
}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_do_not_import_across_the_boundary(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(_imported_modules(path) & FORBIDDEN[package]) for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_boundary_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom hub.config import HubConfig\nimport textual.app\nfrom . import sibling\n")
    assert _imported_modules(sample) == {"os", "hub", "textual"}


def test_importing_the_wire_contract_loads_no_heavy_module() -> None:
    code = (
        "import sys, edge.protocol.wire, edge.protocol.config, edge.door.config, edge.protocol.mqtt\n"
        "heavy = ('numpy', 'cv2', 'onnxruntime', 'textual', 'hub', 'tui', 'sqlite_utils', 'amqtt')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_heavy_module_check_would_notice_numpy() -> None:
    code = "import sys, numpy, edge.protocol.wire\nprint('numpy' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
