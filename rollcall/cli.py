"""The ``rollcall`` command: one entry point with a subcommand per role (broker, edge, agent, hub, tui, wire)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rollcall import __version__
from rollcall.exit_codes import EXIT_BAD_INPUT, EXIT_OK

if TYPE_CHECKING:
    from pydantic import BaseModel

Handler = Callable[[argparse.Namespace], int]


def _config_model(role: str) -> type[BaseModel]:
    # Imported per call so `rollcall --help` stays fast and no role drags in another's modules.
    if role == "edge":
        from edge.door.config import EdgeConfig

        return EdgeConfig
    if role == "agent":
        from edge.agent.config import AgentConfig

        return AgentConfig
    if role == "hub":
        from hub.config import HubConfig

        return HubConfig
    from tui.config import TuiConfig

    return TuiConfig


def check_config(role: str, path: Path) -> int:
    """Validate a role's TOML config plus ROLLCALL_<ROLE>__* overrides; print every problem or a summary."""
    from edge.protocol.config import ConfigError, config_problems, config_warnings, load_config

    try:
        config = load_config(_config_model(role), path, role)
        problems: list[object] = list(config_problems(config))
    except ConfigError as exc:
        problems = list(exc.problems)
    if problems:
        count = len(problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''} in the {role} config:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"Fix these and run `rollcall {role} check-config {path}` again.", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = getattr(config, "summary", None)
    print(f"{path}: OK: {summary() if callable(summary) else role + ' config'}")
    for warning in config_warnings(config):
        print(f"  warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _cmd_broker(args: argparse.Namespace) -> int:
    from rollcall.broker import run

    return run(args.host, args.port)


def _cmd_tui(args: argparse.Namespace) -> int:
    from tui.cli import run_tui

    return run_tui(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rollcall.demo import run

    return run(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from rollcall.bench import run

    return run(args)


def _cmd_wire_decode(args: argparse.Namespace) -> int:
    from edge.protocol.wire import WireError, decode

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"rollcall wire decode: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        ref, payload = decode(args.topic, raw)
    except WireError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"valid {payload.kind} (v{payload.v}) for {ref.role} {ref.entity or ''}".rstrip())
    print(json.dumps(json.loads(payload.model_dump_json()), indent=2))
    return EXIT_OK


def _add_check_config(role_parsers: argparse._SubParsersAction[argparse.ArgumentParser], role: str) -> None:
    parser = role_parsers.add_parser(
        "check-config",
        help=f"validate a {role} config file (and ROLLCALL_{role.upper()}__* overrides); list every bad key",
    )
    parser.add_argument("file", type=Path, help="TOML config file")
    parser.set_defaults(handler=lambda args: check_config(role, args.file))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; role modules add their subcommands as they grow."""
    parser = argparse.ArgumentParser(
        prog="rollcall",
        description="rollcall: who is in the building. Door devices recognise faces, a hub keeps the record, "
        "a terminal UI shows it. See README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"rollcall {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging detail"
    )
    roles = parser.add_subparsers(dest="command", metavar="COMMAND")

    broker = roles.add_parser("broker", help="run the embedded MQTT broker (demo and Mosquitto-less machines)")
    broker.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    from rollcall.broker import tcp_port  # light: the broker itself (amqtt) is imported only when it runs

    broker.add_argument("--port", type=tcp_port, default=1883, help="TCP port (default 1883)")
    broker.set_defaults(handler=_cmd_broker)

    descriptions = {
        "edge": "the door device: camera, recognition, outbox, MQTT",
        "agent": "the workstation screen agent",
        "hub": "the hub: the site's record and its request API",
        "tui": "the supervisor's terminal UI",
    }
    for role, description in descriptions.items():
        role_parser = roles.add_parser(role, help=description, description=description)
        # `rollcall tui` alone opens the UI; every other role needs a subcommand.
        role_commands = role_parser.add_subparsers(dest=f"{role}_command", metavar="COMMAND", required=role != "tui")
        if role == "tui":
            role_parser.add_argument("--config", type=Path, default=None, help="TUI TOML config (optional)")
            role_parser.set_defaults(handler=_cmd_tui)
        _add_check_config(role_commands, role)
        if role == "edge":
            from edge.door.cli import add_edge_commands  # light: handlers import the engine only when run

            add_edge_commands(role_commands)
        if role == "agent":
            from edge.agent.cli import add_agent_commands

            add_agent_commands(role_commands)
        if role == "hub":
            from hub.cli import add_hub_commands

            add_hub_commands(role_commands)

    from hub.cli import add_device_commands, add_people_commands, add_report_commands

    add_people_commands(roles)
    add_device_commands(roles)
    add_report_commands(roles)

    from rollcall.models_cli import add_models_commands  # light: standard library only until a command runs

    add_models_commands(roles)

    demo = roles.add_parser("demo", help="run the whole system on this box: broker, hub, door devices, TUI")
    from rollcall.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    demo.set_defaults(handler=_cmd_demo)

    bench = roles.add_parser("bench", help="measure speed against a baseline in the same run (docs/benchmarks.md)")
    from rollcall.bench import add_arguments  # light: the benchmarks import their subjects only when run

    add_arguments(bench)
    bench.set_defaults(handler=_cmd_bench)

    wire = roles.add_parser("wire", help="inspect messages against the wire contract (docs/wire.md)")
    wire_commands = wire.add_subparsers(dest="wire_command", metavar="COMMAND", required=True)
    decode = wire_commands.add_parser("decode", help="validate a payload received on a topic and print it")
    decode.add_argument("topic", help="the full topic, e.g. rollcall/hq/device/door-1/event")
    decode.add_argument("file", nargs="?", default="-", help="payload file (default: standard input)")
    decode.set_defaults(handler=_cmd_wire_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rollcall`` command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
