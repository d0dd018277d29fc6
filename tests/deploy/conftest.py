"""Fixtures for the deployment tests: the cached rootfs and wheelhouse, booted targets, an Ansible inventory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy import targets as deploy

#: Names of the three targets of a site, as issue 13 asks: the hub (and broker), a door, a workstation.
SITE_TARGETS = ("hub", "door-1", "pc-1")
_TIMINGS: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/deploy is a `deploy` test, so the default run (`-m 'not ... deploy'`) leaves it out."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.deploy)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the rootfs, the wheelhouse and the boots took, at the end of the run."""
    if _TIMINGS:
        terminalreporter.section("deployment harness timings")
        for line in _TIMINGS:
            terminalreporter.write_line(line)


def record_timing(line: str) -> None:
    """Keep a line for the timings summary at the end of the run."""
    _TIMINGS.append(line)


@pytest.fixture(scope="session")
def progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print a progress line now (the rootfs build takes minutes), past pytest's output capture."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"deploy: {message}")
        else:
            print(f"deploy: {message}", file=sys.stderr)

    return say


@pytest.fixture(scope="session")
def deploy_cache() -> Path:
    """The cache folder ($ROLLCALL_DEPLOY_CACHE, default /var/cache/rollcall-deploy); fails if this host can't."""
    problems = deploy.preflight()
    if problems:
        pytest.fail(
            "the deployment tests can't run here: " + "; ".join(problems) + " (.ci/run installs these)", pytrace=False
        )
    cache = deploy.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def deploy_rootfs(deploy_cache: Path, progress: Callable[[str], None]) -> Path:
    """The targets' Debian bookworm rootfs, built once (about two minutes) and reused while its recipe holds."""
    built = deploy.build_rootfs(deploy_cache, progress)
    record_timing(f"rootfs: {built.seconds:.1f} s ({'reused' if built.reused else 'built'}) {built.path}")
    progress(f"rootfs ready in {built.seconds:.1f} s ({'reused' if built.reused else 'built'})")
    return built.path


@pytest.fixture(scope="session")
def wheelhouse(
    deploy_cache: Path, tmp_path_factory: pytest.TempPathFactory, progress: Callable[[str], None]
) -> deploy.Wheelhouse:
    """Wheels of rollcall (this working tree) and every dependency of its extras, for `pip install --no-index`."""
    house = deploy.build_wheelhouse(REPO_ROOT, deploy_cache, tmp_path_factory.mktemp("wheelhouse"), progress=progress)
    dependencies = house.dependencies
    record_timing(
        f"wheelhouse: {house.seconds:.1f} s (dependency wheels {dependencies.seconds:.1f} s, "
        f"{'reused' if dependencies.reused else 'built'}; {len(list(house.path.glob('*.whl')))} wheels)"
    )
    return house


@pytest.fixture(scope="session")
def _terminate_on_sigterm() -> Iterator[None]:
    """A SIGTERM to pytest (a CI time-out) unwinds like Ctrl-C, so the targets are halted and removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def target_session(
    deploy_cache: Path,
    deploy_rootfs: Path,
    tmp_path_factory: pytest.TempPathFactory,
    progress: Callable[[str], None],
    _terminate_on_sigterm: None,
) -> Iterator[deploy.TargetSet]:
    """An empty set of targets for this test session; `.boot([...])` adds some; all are removed at the end."""
    with deploy.target_session(deploy_cache, deploy_rootfs, tmp_path_factory.mktemp("ssh"), progress) as targets:
        yield targets
        if targets.boot_seconds:
            record_timing(f"boot: {targets.boot_seconds:.1f} s for {targets.booted} targets ({targets.root_method})")


@pytest.fixture(scope="session")
def site_targets(target_session: deploy.TargetSet, progress: Callable[[str], None]) -> deploy.TargetSet:
    """Three booted targets named hub, door-1 and pc-1, shared by the session's deployment tests."""
    missing = [name for name in SITE_TARGETS if name not in target_session.targets]
    if missing:
        target_session.boot(missing, progress=progress)
    return target_session


@pytest.fixture(scope="session")
def ansible_bin() -> Path:
    """The folder of the `ansible` commands (the `deploy` extra: pip install -e '.[deploy]')."""
    found = shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        pytest.fail("ansible is not installed: pip install -e '.[deploy]'", pytrace=False)
    return Path(found).parent


def run_ansible(
    ansible_bin: Path, command: str, *args: str, timeout: float = 600, cwd: Path = REPO_ROOT, json_output: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `ansible`, `ansible-playbook`, ... with host key checks off and no retry files; output captured.

    With `json_output`, stdout is the `json` callback's document (`ansible_results` parses it).
    """
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{ansible_bin}{os.pathsep}{os.environ['PATH']}",
    }
    if json_output:
        env |= {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"}
    return subprocess.run(
        [str(ansible_bin / command), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ansible_results(run: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, Any]]]:
    """Per host, the result of each task, in order, from a `run_ansible(..., json_output=True)` run."""
    try:
        document = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible printed no JSON document: {run.stdout[-2000:]}{run.stderr[-2000:]}") from exc
    results: dict[str, list[dict[str, Any]]] = {}
    for play in document["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                results.setdefault(host, []).append(result)
    return results
