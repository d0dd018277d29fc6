"""The ``rollcall agent`` subcommands: ``run``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_agent_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run`` under ``rollcall agent``."""
    run = commands.add_parser(
        "run",
        help="run the workstation agent in this desktop session (thumbnails, activity, files, commands)",
        description="Run the workstation agent: screen thumbnails when the screen changes, idle/active intervals, "
        "the active window, watched file changes, and supervisor commands (message, lock, screenshot). It shows a "
        "notification when it starts. Meant as a systemd user service (systemd/rollcall-agent.service).",
    )
    run.add_argument("--config", type=Path, required=True, help="agent TOML config (see docs/examples/agent.toml)")
    run.set_defaults(handler=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    """``rollcall agent run``."""
    from edge.agent.config import AgentConfig
    from edge.agent.service import AgentService
    from edge.runtime.launcher import launch
    from edge.runtime.outbox import OutboxError

    def build(config: AgentConfig, software: str) -> AgentService:
        return AgentService(config, software=software)

    return launch("agent", AgentConfig, args.config, build, (OutboxError, OSError))


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.agent run --config FILE`` (the same as ``rollcall agent run``)."""
    import logging

    parser = argparse.ArgumentParser(prog="rollcall agent")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_agent_commands(parser.add_subparsers(dest="agent_command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    result: int = args.handler(args)
    return result
