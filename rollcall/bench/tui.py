"""``rollcall bench tui``: event committed at the hub → its row on the presence board, and TUI CPU under thumbnails.

Runs a hub, the TUI (headless, through Textual's test driver) and a load generator against a private broker. The
latency is measured from the hub's commit of a person's first event to the moment the presence table shows them IN.
The CPU figure is the share of a core this process (TUI plus an idle hub) uses while 100 workstations send a
thumbnail every 5 s from another process; the baseline is the same process with no thumbnails arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings, SiteSettings
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import Received
from hub.config import CameraRoleSettings, HubConfig, HubSettings
from hub.service import HubService
from hub.store import HubStore
from rollcall.bench.runner import Benchmark, Figures
from rollcall.broker import LocalBroker, find_mosquitto

SITE = "bench-tui"
THUMBNAILS = """
import sys, time
import numpy as np, cv2
from ulid import ULID
from edge.protocol import wire
from edge.protocol.mqtt import MqttLink
from edge.protocol.config import MqttSettings
port, agents, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
topics = wire.Topics("bench-tui")
link = MqttLink(MqttSettings(port=port), client_id="bench-thumbnails", max_inflight=1000)
link.start(); link.wait_connected(10)
rng = np.random.default_rng(1)
image = cv2.imencode(".jpg", rng.integers(0, 255, (200, 320, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
start = time.monotonic()
while time.monotonic() - start < seconds:
    for i in range(agents):
        agent = f"pc-{i:03d}"
        shot = wire.Screen(agent=agent, at=wire.now_utc(), content_type="image/jpeg", width=320, height=200,
                           changed_fraction=0.1, data=image)
        link.publish(topics.agent_thumbnail(agent), shot, qos=1, retain=True)
    time.sleep(5)
link.stop()
"""


async def _measure(app: object, hub: HubService, people: list[str], cpu_seconds: float, port: int) -> dict[str, float]:
    from textual.widgets import DataTable

    from tui.app import RollcallApp

    assert isinstance(app, RollcallApp)
    latencies: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(2.0)
        table = app.query_one("#presence-table", DataTable)
        for index, person in enumerate(people):
            event = wire.Event(
                event_id=str(ULID()),
                device="door-1",
                seq=index + 1,
                at=wire.now_utc(),
                type="seen",
                person_id=person,
                score=0.8,
                margin=0.3,
                track=index,
                quality=0.9,
                has_snapshot=False,
            )
            hub.handle_batch([(Received(hub.topics.device_event("door-1"), wire.encode(event), 1, False), 0.0)])
            committed = time.perf_counter()
            while time.perf_counter() - committed < 5:
                try:
                    if "IN" in [str(cell) for cell in table.get_row(person)]:
                        break
                except Exception:
                    pass
                await pilot.pause(0.005)
            latencies.append((time.perf_counter() - committed) * 1000)
        idle_cpu = time.process_time()
        idle_wall = time.perf_counter()
        await pilot.pause(cpu_seconds / 2)
        idle = (time.process_time() - idle_cpu) / (time.perf_counter() - idle_wall)
        load = subprocess.Popen([sys.executable, "-c", THUMBNAILS, str(port), "100", str(cpu_seconds)])
        await pilot.pause(2.0)
        busy_cpu = time.process_time()
        busy_wall = time.perf_counter()
        await pilot.pause(cpu_seconds - 2)
        busy = (time.process_time() - busy_cpu) / (time.perf_counter() - busy_wall)
        load.wait(30)
    latencies.sort()
    return {
        "board_latency_p50_ms": round(latencies[len(latencies) // 2], 1),
        "board_latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "tui_cpu_percent_with_100_workstations": round(100 * busy, 2),
        "tui_cpu_percent_idle": round(100 * idle, 2),
    }


def bench_tui(people: int = 40, cpu_seconds: float = 30.0) -> dict[str, float]:
    """Both figures; starts a private broker (Mosquitto if installed)."""
    from tui.app import RollcallApp
    from tui.live import LiveState

    with tempfile.TemporaryDirectory(prefix="rollcall-bench-tui-") as scratch:
        folder = Path(scratch)
        broker = LocalBroker("mosquitto" if find_mosquitto() else "embedded", folder / "broker")
        broker.start()
        try:
            settings = MqttSettings(port=broker.port)
            hub_settings = HubSettings(database=folder / "hub.db", data_dir=folder / "hub", key_file=folder / "hub.key")
            config = HubConfig(
                mqtt=settings,
                hub=hub_settings,
                site=SiteSettings(id=SITE),
                cameras=[CameraRoleSettings(device="door-1")],
            )
            store = HubStore.from_settings(hub_settings)
            now = wire.now_utc() - timedelta(minutes=1)
            ids = [store.add_person(f"Person {i:03d}", now) for i in range(people)]
            hub = HubService(config, store, model_id="m:x", embedding_size=128)
            hub.start()
            topics = wire.Topics(SITE)
            live = LiveState(settings, topics, "bench-tui-live")
            client = HubClient(settings, topics, "bench-tui")
            live.start()
            client.start()
            app = RollcallApp(live, client, site=SITE)
            try:
                return asyncio.run(_measure(app, hub, ids, cpu_seconds, broker.port))
            finally:
                client.close()
                live.stop()
                hub.stop()
                store.close()
        finally:
            broker.stop()


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  board    : p50 {figures['board_latency_p50_ms']} ms, p95 {figures['board_latency_p95_ms']} ms "
        "from the hub's commit to the row showing IN",
        f"  CPU      : {figures['tui_cpu_percent_with_100_workstations']} % of one core with 100 workstations "
        f"(idle: {figures['tui_cpu_percent_idle']} %)",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: "bench tui: 40 arrivals on the board, then 100 workstations sending thumbnails every 5 s",
    measure=lambda args: bench_tui(),
    report=_report,
)
