"""``rollcall tui [--config FILE]``: the arguments and the runner, wired into the ``rollcall`` command."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_CONFIG = 2


def add_tui_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the TUI's options to its subcommand's parser."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="the TUI's TOML config (default: built-in defaults plus ROLLCALL_TUI__SECTION__KEY=value overrides)",
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def run_tui(args: argparse.Namespace) -> int:
    """Load the config, connect to the broker (in the background) and run the app until the user quits."""
    from edge.protocol.config import ConfigError, load_config
    from tui.config import TuiConfig

    path: Path | None = getattr(args, "config", None)
    try:
        config = load_config(TuiConfig, path, "tui")
    except ConfigError as exc:
        where = path if path is not None else "the TUI config (defaults and ROLLCALL_TUI__* variables)"
        print(f"{where}: {len(exc.problems)} problem(s) in the tui config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        print("Fix these (`rollcall tui check-config FILE` checks a file) and start again.", file=sys.stderr)
        return EXIT_BAD_CONFIG

    # textual_image asks the terminal what it can draw (Sixel, Kitty, half blocks) when imported: before Textual
    # takes the terminal over.
    from edge.protocol import wire
    from edge.protocol.hub_client import HubClient
    from tui.app import RollcallApp
    from tui.live import LiveState

    topics = wire.Topics(config.site.id, config.site.topic_prefix)
    live = LiveState(config.mqtt, topics, f"tui-{config.tui.id}-live")
    hub = HubClient(config.mqtt, topics, client=config.tui.id)
    app = RollcallApp(
        live,
        hub,
        site=config.site.id,
        timezone=config.site.timezone,
        max_redraw_hz=config.tui.max_redraw_hz,
        request_timeout_s=config.tui.request_timeout_s,
        poll_s=config.tui.poll_s,
        export_dir=config.tui.export_dir,
        issued_by=f"tui:{_user()}",
        events_shown=config.tui.events_shown,
    )
    # Both links connect in the background: an unreachable broker shows in the UI and is retried, not fatal.
    live.start()
    hub.link.start()
    try:
        app.run()
    finally:
        hub.close()
        live.stop()
    return EXIT_OK
