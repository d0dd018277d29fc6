"""Shared fixtures: a real broker per test (Mosquitto, or the embedded one where allowed) and real hubs on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.brokers import BrokerKind, TestBroker, find_mosquitto

if TYPE_CHECKING:
    from tests.helpers.hub import HubStarter

REPO_ROOT = Path(__file__).resolve().parents[1]


def broker_kind() -> BrokerKind:
    """Mosquitto when installed; the embedded broker otherwise, unless ROLLCALL_REQUIRE_MOSQUITTO=1 (as in CI)."""
    if find_mosquitto() is not None:
        return "mosquitto"
    if os.environ.get("ROLLCALL_REQUIRE_MOSQUITTO") == "1":
        pytest.fail(
            "ROLLCALL_REQUIRE_MOSQUITTO=1 but mosquitto is not installed: `apt-get install mosquitto` "
            "(.ci/run does this), or unset the variable to test against the embedded broker",
            pytrace=False,
        )
    return "embedded"


def _data_dir(variable: str, fallback: Path) -> Path:
    """A test data folder from the environment (CI sets it), else the development checkout's ../shared folder."""
    configured = os.environ.get(variable)
    path = Path(configured) if configured else fallback
    if not path.is_dir():
        pytest.fail(
            f"{variable} is not set to an existing folder (tried {path}); point it at the real "
            f"{'models' if 'MODEL' in variable else 'face photos'} (CI uses ../shared/)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Folder with the real ONNX models ($ROLLCALL_MODEL_DIR)."""
    return _data_dir("ROLLCALL_MODEL_DIR", REPO_ROOT.parent / "shared" / "models")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """Folder with the real face photos ($ROLLCALL_FACES_DIR), one sub-folder per identity."""
    return _data_dir("ROLLCALL_FACES_DIR", REPO_ROOT.parent / "shared" / "faces")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A fresh broker on a free loopback port, stopped through its process handle after the test."""
    instance = TestBroker(kind=broker_kind(), workdir=tmp_path / "broker")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """The embedded broker (`rollcall broker`) as a real subprocess."""
    instance = TestBroker(kind="embedded", workdir=tmp_path / "embedded")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def start_hub(broker: TestBroker, tmp_path: Path, model_dir: Path) -> Iterator[HubStarter]:
    """Starts real HubServices on this test's broker, with their data under tmp_path; stops them after the test.

    ``start_hub(extra_config, clock=..., engine=..., enrolment=...)`` returns a started, subscribed hub; see
    :class:`tests.helpers.hub.HubStarter`.
    """
    # Imported here so that tests which never start a hub do not load it (and numpy with it).
    from tests.helpers.hub import HubStarter

    starter = HubStarter(broker, tmp_path, model_dir)
    try:
        yield starter
    finally:
        starter.close()
