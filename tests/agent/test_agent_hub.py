"""A workstation agent and the real hub through Mosquitto: a file created in a watched folder is logged at the hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.agent.config import AgentConfig
from edge.agent.service import AgentService
from edge.protocol.config import load_config
from hub.config import HubConfig
from hub.service import HubService
from hub.store import HubStore
from tests.agent.conftest import XServer, wait_until, write_agent_config
from tests.helpers.brokers import TestBroker
from tests.integration.test_hub import hub_config


@pytest.fixture
def plain_hub(broker: TestBroker, tmp_path: Path, model_dir: Path) -> Iterator[HubService]:
    """A hub on the test broker at the agent's site (no face models needed here)."""
    (tmp_path / "hub").mkdir()
    path = hub_config(tmp_path / "hub", broker, model_dir)
    from tests.agent.conftest import SITE

    path.write_text(path.read_text().replace('id = "hq"', f'id = "{SITE}"', 1))
    config = load_config(HubConfig, path, "hub", {})
    store = HubStore.from_settings(config.hub)
    hub = HubService(config, store, model_id="m:x", embedding_size=128)
    hub.start()
    assert hub.link.wait_subscribed(10)
    try:
        yield hub
    finally:
        hub.stop()
        store.close()


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
