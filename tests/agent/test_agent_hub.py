"""A workstation agent and the real hub through Mosquitto: a file created in a watched folder is logged at the hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.agent.config import AgentConfig
from edge.agent.service import AgentService
from edge.protocol.config import load_config
from hub.service import HubService
from tests.agent.conftest import XServer, wait_until, write_agent_config
from tests.helpers.brokers import TestBroker
from tests.helpers.hub import HubStarter


@pytest.fixture
def plain_hub(start_hub: HubStarter, tmp_path: Path) -> HubService:
    """A hub on the test broker at the agent's site (no face models needed here)."""
    from tests.agent.conftest import SITE

    return start_hub(folder=tmp_path / "hub", site=SITE)


def test_a_file_created_in_a_watched_folder_is_logged_at_the_hub(
    xvfb: XServer, broker: TestBroker, plain_hub: HubService, tmp_path: Path
) -> None:
    config = load_config(AgentConfig, write_agent_config(tmp_path, broker, thumbnails=False), "agent", {})
    agent = AgentService(config, software="rollcall-test", sample_s=0.2)
    agent.start()
    try:
        assert agent.link.wait_subscribed(10)
        (tmp_path / "watched" / "essay.txt").write_text("first draft\n")

        def logged() -> list[str]:
            with plain_hub.store_lock:
                return [change["path"] for change in plain_hub.store.file_changes(config.agent.id)]

        assert wait_until(lambda: any(path.endswith("essay.txt") for path in logged()), 30)
        with plain_hub.store_lock:
            (row,) = [a for a in plain_hub.store.list_agents() if a["id"] == config.agent.id]
        assert row["status"] == "online"
        assert wait_until(lambda: agent.outbox.stats().depth == 0, 15), "the hub acked the agent's activity"
    finally:
        agent.stop()
