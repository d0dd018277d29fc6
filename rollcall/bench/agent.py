"""``rollcall bench agent``: what a workstation agent costs on a mostly unchanged desktop, measured on a real X server.

Starts Xvfb (unless ``DISPLAY`` is set), a private broker and the agent; a window changes its text every
``change_every_s`` seconds (a clock on an otherwise still desktop). It reports the bytes the agent publishes per hour
(thumbnails, activity, status), the agent's CPU share, and the latency from a screen change to the thumbnail that
shows it reaching a subscriber (as the TUI receives it). The baseline is a naive agent that publishes a thumbnail
every ``min_interval_s`` whether or not anything changed, computed from the same thumbnail sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from edge.protocol import wire
from edge.protocol.config import MqttSettings, load_config
from edge.protocol.mqtt import MqttLink, Received
from rollcall.bench.runner import Benchmark, Figures, at_least, percentile
from rollcall.broker import LocalBroker, find_mosquitto


def start_xvfb(folder: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Xvfb on a free display number, unless ``DISPLAY`` is set: (its process or None, the display to use)."""
    if os.environ.get("DISPLAY"):
        return None, os.environ["DISPLAY"]
    binary = shutil.which("Xvfb")
    if binary is None:
        raise RuntimeError("no DISPLAY and no Xvfb: apt-get install xvfb, or run on a desktop")
    for number in range(90, 120):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            process = subprocess.Popen(
                [binary, f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not Path(f"/tmp/.X11-unix/X{number}").exists():
                time.sleep(0.05)
            return process, f":{number}"
    raise RuntimeError("no free X display number")


def bench_agent(seconds: float = 60.0, change_every_s: float = 10.0, min_interval_s: float = 5.0) -> dict[str, float]:
    """Run the agent on a still desktop with a periodic change; return the figures."""
    from edge.agent.config import AgentConfig
    from edge.agent.service import AgentService

    with tempfile.TemporaryDirectory(prefix="rollcall-bench-agent-") as scratch:
        folder = Path(scratch)
        xvfb, display = start_xvfb(folder)
        os.environ["DISPLAY"] = display
        broker = LocalBroker("mosquitto" if find_mosquitto() else "embedded", folder / "broker")
        broker.start()
        windows: list[subprocess.Popen[bytes]] = []
        try:
            config_path = folder / "agent.toml"
            config_path.write_text(
                f'[site]\nid = "bench"\n[mqtt]\nport = {broker.port}\n[agent]\nid = "bench-pc"\n'
                f'data_dir = "{folder / "agent"}"\n[capture]\nmin_interval_s = {min_interval_s}\n'
                "change_threshold = 0.002\n[activity]\npublish_interval_s = 60\n"
            )
            config = load_config(AgentConfig, config_path, "agent", {})
            received: list[tuple[float, str, int]] = []
            lock = threading.Lock()

            def on_message(message: Received) -> None:
                with lock:
                    received.append((time.perf_counter(), message.topic, len(message.payload)))

            listener = MqttLink(
                MqttSettings(port=broker.port), client_id="bench-listener", on_message=on_message, clean_session=True
            )
            listener.subscribe(f"{wire.Topics('bench').base}/agent/#")
            listener.start()
            listener.wait_subscribed(10)
            agent = AgentService(config, software="rollcall-bench")
            cpu_before = time.process_time()
            agent.start()
            started = time.perf_counter()
            changes: list[float] = []
            while time.perf_counter() - started < seconds:
                # Someone switching between two windows now and then; the rest of the time nothing moves.
                place = "+100+100" if len(changes) % 2 == 0 else "+600+380"
                windows.append(
                    subprocess.Popen(
                        ["xmessage", "-geometry", f"500x300{place}", f"document {len(changes)}"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                if len(windows) > 1:
                    windows.pop(0).terminate()
                changes.append(time.perf_counter())
                time.sleep(change_every_s)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            agent.stop()
            listener.stop()
        finally:
            for window in windows:
                window.terminate()
            broker.stop()
            if xvfb is not None:
                xvfb.terminate()
                xvfb.wait(10)
    thumbs = [(t, size) for t, topic, size in received if topic.endswith("/thumbnail")]
    total = sum(size for _, _, size in received)
    latencies = []
    for change in changes[1:]:
        after = [t for t, _ in thumbs if t > change]
        if after:
            latencies.append(after[0] - change)
    mean_thumb = sum(size for _, size in thumbs) / len(thumbs) if thumbs else 0.0
    naive_per_hour = mean_thumb * 3600 / min_interval_s
    latencies.sort()
    return {
        "bytes_per_hour": round(total * 3600 / elapsed),
        "naive_bytes_per_hour": round(naive_per_hour),
        "ratio": round(naive_per_hour / (total * 3600 / elapsed), 1) if total else 0.0,
        "thumbnails": len(thumbs),
        "agent_cpu_percent": round(100 * cpu / elapsed, 2),
        "thumbnail_latency_p50_s": round(percentile(latencies, 0.5), 2),
        "thumbnail_latency_max_s": round(latencies[-1], 2) if latencies else float("nan"),
    }


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  published : {figures['bytes_per_hour']:>10,} bytes/hour ({figures['thumbnails']} thumbnails)",
        f"  baseline  : {figures['naive_bytes_per_hour']:>10,} bytes/hour (a thumbnail every interval)",
        f"  ratio     : {figures['ratio']}x",
        f"  CPU       : {figures['agent_cpu_percent']} % of one core",
        f"  latency   : change -> thumbnail at a subscriber p50 {figures['thumbnail_latency_p50_s']} s, "
        f"max {figures['thumbnail_latency_max_s']} s",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: f"bench agent: {args.seconds:.0f} s on a still desktop with a change every 10 s",
    measure=lambda args: bench_agent(seconds=args.seconds),
    report=_report,
    check=at_least("agent", "--seconds", 20),
)
