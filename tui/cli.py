"""``rollcall tui [--config FILE]``: the arguments and the runner, wired into the ``rollcall`` command."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.protocol.hub_client import HubClient
    from tui.config import TuiConfig
    from tui.live import LiveState

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


def session_links(config: TuiConfig, session: str) -> tuple[LiveState, HubClient]:
    """The two broker links of one TUI session, each with the session in its client id.

    ``<name>:<session>`` asks the hub, ``<name>:<session>-live`` follows the site's state; both take TLS (CA, client
    certificate and key) from ``[mqtt.tls]``.
    """
    from edge.protocol import wire
    from edge.protocol.hub_client import HubClient
    from tui.live import LiveState

    topics = wire.Topics(config.site.id, config.site.topic_prefix)
    name = config.supervisor_name
    hub = HubClient(config.mqtt, topics, name, session)
    # Keep only as many live events as the Events view shows: nothing reads the rest.
    live = LiveState(config.mqtt, topics, f"{hub.client_id}-live", events_kept=config.tui.events_shown)
    return live, hub


def run_tui(args: argparse.Namespace) -> int:
    """Load the config, connect to the broker (in the background) and run the app until the user quits."""
    from edge.protocol.config import ConfigError, config_problems, load_config
    from tui.config import TuiConfig

    path: Path | None = getattr(args, "config", None)
    try:
        config = load_config(TuiConfig, path, "tui")
        problems: list[object] = list(config_problems(config))  # the TLS CA, certificate and key
    except ConfigError as exc:
        problems = list(exc.problems)
    if problems:
        where = path if path is not None else "the TUI config (defaults and ROLLCALL_TUI__* variables)"
        print(f"{where}: {len(problems)} problem(s) in the tui config:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("Fix these (`rollcall tui check-config FILE` checks a file) and start again.", file=sys.stderr)
        return EXIT_BAD_CONFIG

    # textual_image asks the terminal what it can draw (Sixel, Kitty, half blocks) when imported: before Textual
    # takes the terminal over.
    from edge.protocol.hub_client import new_session
    from tui.app import RollcallApp

    live, hub = session_links(config, new_session())
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
        day_starts_at=config.tui.day_starts_at,
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
