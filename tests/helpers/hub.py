"""A real hub for tests: its config in a temp folder, a HubService running against a test broker, a settable clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.mqtt import Received
from edge.recognition.faces import FaceEngine
from hub.config import HubConfig
from hub.enrol import PhotoAssessment
from hub.service import HubService
from hub.store import HubStore
from tests.helpers.brokers import TestBroker

TEST_MODEL_ID = "m:x"
"""The model id of a hub started without a face engine (it never embeds a face)."""
TEST_EMBEDDING_SIZE = 128


class Clock:
    """A hand-set clock for the hub (and the TUI): tests move ``now`` to make time pass."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Enrolment(Protocol):
    """What the hub calls to enrol people from photos and device captures (the hub's enroller provides it)."""

    def assess_photos(self, paths: list[str]) -> list[PhotoAssessment]:
        """Judge photos (folders expanded): a template or the reason for each."""

    def embed_capture(self, jpeg: bytes) -> tuple[Any, float, str | None]:
        """Embedding, quality and problem of a device's enrolment crop."""


def hub_config(
    folder: Path,
    broker: TestBroker,
    model_dir: Path,
    *,
    site: str = "hq",
    extra: str = "",
    accept_unknown_devices: bool = True,
    import_dir: Path | None = None,
) -> Path:
    """Write ``folder/hub.toml``: a hub of ``site`` on the test broker, its database and key under ``folder``.

    ``extra`` is appended verbatim (TOML tables such as ``[schedule]``, ``[[cameras]]`` or ``[supervisors.x]``).
    Tests accept unknown devices unless they say otherwise (a provisioned site does not); ``import_dir`` is where
    ``people.enrol_photos`` may read (unset: enrolment from photos is refused).
    """
    hub_extra = f"accept_unknown_devices = {'true' if accept_unknown_devices else 'false'}\n"
    if import_dir is not None:
        hub_extra += f'import_dir = "{import_dir}"\n'

    path = folder / "hub.toml"
    path.write_text(
        f"""
[site]
id = "{site}"
timezone = "Europe/Berlin"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 2

[hub]
database = "{folder / "hub-data" / "rollcall.db"}"
data_dir = "{folder / "hub-data"}"
key_file = "{folder / "hub-data" / "hub.key"}"
models_dir = "{model_dir}"
{hub_extra}
[attendance]
settle_out_after_min = 1
"""
        + extra
    )
    return path


class LockedStore:
    """A hub's store for a test: every method call holds the hub's store lock.

    The lock is an RLock, so the hub's own threads, which already hold it, pass straight through.
    """

    def __init__(self, store: HubStore, lock: threading.RLock) -> None:
        self._store = store
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


@contextmanager
def running_hub(
    config_path: Path,
    *,
    clock: Callable[[], datetime] = wire.now_utc,
    engine: FaceEngine | None = None,
    enrolment: Enrolment | None = None,
) -> Iterator[HubService]:
    """A HubService started from ``config_path`` and subscribed; stopped and its store closed afterwards.

    With ``engine`` the hub speaks that engine's model id and embedding size (otherwise a stand-in model that never
    embeds); ``enrolment`` is what enrols photos and captures (on the hub's enrolment thread).
    """
    config = load_config(HubConfig, config_path, "hub", {})
    store = HubStore.from_settings(config.hub)
    enroller = enrolment
    service = HubService(
        config,
        store,
        model_id=engine.embedder.model_id if engine is not None else TEST_MODEL_ID,
        embedding_size=engine.embedder.embedding_size if engine is not None else TEST_EMBEDDING_SIZE,
        clock=clock,
        assess_photos=enroller.assess_photos if enroller is not None else None,
        enrol_capture=enroller.embed_capture if enroller is not None else None,
    )
    # The test thread uses hub.store as the writer thread does: under the store lock. Unlocked, a test's COMMIT can
    # meet a statement of the writer's maintenance pass on the one connection ("SQL statements in progress").
    service.store = cast(HubStore, LockedStore(store, service.store_lock))
    service.start()
    try:
        assert service.link.wait_subscribed(10), "the hub did not subscribe at the test broker"
        yield service
    finally:
        service.stop()
        store.close()


class HubStarter:
    """The ``start_hub`` fixture: starts hubs on one test's broker and folder, and stops them all at the end."""

    def __init__(self, broker: TestBroker, folder: Path, model_dir: Path) -> None:
        self.broker = broker
        self.folder = folder
        self.model_dir = model_dir
        self._running = ExitStack()

    def __call__(
        self,
        extra_config: str = "",
        *,
        folder: Path | None = None,
        site: str = "hq",
        clock: Callable[[], datetime] = wire.now_utc,
        engine: FaceEngine | None = None,
        enrolment: Enrolment | None = None,
        accept_unknown_devices: bool = True,
        import_dir: Path | None = None,
    ) -> HubService:
        """Write a hub config (see :func:`hub_config`) under ``folder`` (the test's tmp_path) and start that hub."""
        target = folder if folder is not None else self.folder
        target.mkdir(parents=True, exist_ok=True)
        path = hub_config(
            target,
            self.broker,
            self.model_dir,
            site=site,
            extra=extra_config,
            accept_unknown_devices=accept_unknown_devices,
            import_dir=import_dir,
        )
        return self._running.enter_context(running_hub(path, clock=clock, engine=engine, enrolment=enrolment))

    def close(self) -> None:
        """Stop every hub this starter started, the last one first."""
        self._running.close()


def feed(hub: HubService, *payloads: wire.Event | wire.Snapshot | wire.Capture | wire.Status | wire.Health) -> None:
    """Hand door-device messages to the hub's writer path in one batch, as if they had arrived from the broker."""
    messages = []
    for payload in payloads:
        if isinstance(payload, wire.Event):
            topic = hub.topics.device_event(payload.device)
        elif isinstance(payload, wire.Snapshot):
            topic = hub.topics.device_snapshot(payload.device)
        elif isinstance(payload, wire.Capture):
            topic = hub.topics.device_capture(payload.device)
        elif isinstance(payload, wire.Status):
            topic = hub.topics.device_status(payload.client)
        else:
            topic = hub.topics.device_health(payload.device)
        messages.append((Received(topic, wire.encode(payload), 1, False), 0.0))
    hub.handle_batch(messages)
