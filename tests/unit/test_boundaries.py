"""Import boundaries lint-imports cannot see: what importing the wire contract loads, and cycles across packages.

The rules on who may import whom are import-linter contracts in pyproject.toml, checked by ``lint-imports`` (in
``make lint``); docs/testing.md lists them.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

import grimp

from tests.conftest import REPO_ROOT


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


def _root_packages() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    roots: list[str] = config["tool"]["importlinter"]["root_packages"]
    return roots


def cross_package_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest import cycle for each import from one top-level package into another that leads back.

    import-linter's ``acyclic_siblings`` contract finds cycles inside each root package (edge, hub, tui, rollcall)
    but cannot see one that runs through two of them, as they have no common parent: this finds those.
    """
    cycles: list[tuple[str, ...]] = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.split(".")[0] == imported.split(".")[0]:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append((importer, *back))
    return cycles


def test_no_import_cycle_runs_through_two_top_level_packages() -> None:
    # grimp reads every import statement: module level, inside functions and under TYPE_CHECKING alike.
    graph = grimp.build_graph(*_root_packages(), cache_dir=None)
    cycles = [" -> ".join(cycle) for cycle in cross_package_cycles(graph)]
    assert cycles == [], "import cycles across packages:\n" + "\n".join(cycles)


def test_the_cycle_check_names_a_cycle_across_packages_and_ignores_one_way_imports() -> None:
    graph = grimp.ImportGraph()
    graph.add_import(importer="tui.app", imported="rollcall.broker")
    graph.add_import(importer="rollcall.broker", imported="rollcall.cli")
    graph.add_import(importer="rollcall.cli", imported="tui.app")
    graph.add_import(importer="rollcall.cli", imported="hub.service")
    graph.add_import(importer="hub.service", imported="hub.store")
    graph.add_import(importer="hub.store", imported="hub.service")  # inside one package: the contract's job
    assert cross_package_cycles(graph) == [
        ("rollcall.cli", "tui.app", "rollcall.broker", "rollcall.cli"),
        ("tui.app", "rollcall.broker", "rollcall.cli", "tui.app"),
    ]
