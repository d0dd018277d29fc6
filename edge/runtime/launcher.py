"""The one launcher of the device processes (``rollcall edge run``, ``rollcall agent run``): config, signals, run."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol, TypeVar

from edge.protocol.config import ConfigError, config_warnings, load_config
from edge.runtime.config import DeviceConfig


class RunnableService(Protocol):
    """A device service: :meth:`run` blocks until ``stop_event`` is set, then flushes and stops."""

    @property
    def stop_event(self) -> threading.Event: ...

    def run(self) -> None: ...


ConfigT = TypeVar("ConfigT", bound=DeviceConfig)


def software_version() -> str:
    """``rollcall <version>`` as installed, or plain ``rollcall`` when run from a source tree without metadata."""
    try:
        return f"rollcall {version('rollcall')}"
    except PackageNotFoundError:
        return "rollcall"


def launch(
    role: str,
    model: type[ConfigT],
    config_path: Path,
    build: Callable[[ConfigT, str], RunnableService],
    build_errors: tuple[type[Exception], ...],
) -> int:
    """Load the role's config, build its service, stop it on SIGTERM/SIGINT and run it; the exit status.

    A config with problems prints every problem and returns 2, and so does a service that ``build`` cannot make
    for one of ``build_errors`` (a missing model, an unusable outbox, a folder that cannot be written).
    """
    software = software_version()
    try:
        config = load_config(model, config_path, role)
    except ConfigError as exc:
        print(f"rollcall {role}: {config_path}: the config has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    for warning in config_warnings(config):
        print(f"rollcall {role}: {config_path}: warning: {warning}", file=sys.stderr, flush=True)
    try:
        service = build(config, software)
    except build_errors as exc:
        print(f"rollcall {role}: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop_event.set())
    print(f"rollcall {role}: {config.summary()}", file=sys.stderr, flush=True)
    service.run()
    return 0
