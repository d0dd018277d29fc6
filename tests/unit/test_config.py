"""Typed config: every role's example is accepted, every bad key is reported with its line or variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from edge.agent.config import AgentConfig
from edge.door.config import EdgeConfig
from edge.protocol.config import ConfigError, ConfigProblem, MqttSettings, load_config, locate_keys
from hub.config import HubConfig
from tests.conftest import REPO_ROOT
from tui.config import TuiConfig

EXAMPLES = REPO_ROOT / "docs" / "examples"
ROLES: dict[str, type[BaseModel]] = {"edge": EdgeConfig, "agent": AgentConfig, "hub": HubConfig, "tui": TuiConfig}


def example_secrets(folder: Path) -> dict[str, str]:
    """Overrides pointing the examples' ``mqtt.password_file`` at files that exist (the examples name /etc paths)."""
    env = {}
    for role in ROLES:
        secret = folder / f"{role}-mqtt.password"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        env[f"ROLLCALL_{role.upper()}__MQTT__PASSWORD_FILE"] = str(secret)
    return env


def _problems(
    model: type[BaseModel], text: str, tmp_path: Path, env: dict[str, str] | None = None
) -> list[ConfigProblem]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(model, path, "edge", env or {})
    return caught.value.problems


@pytest.mark.parametrize("role", sorted(ROLES))
def test_example_configs_are_accepted(role: str, tmp_path: Path) -> None:
    uses_password_file = "password_file" in (EXAMPLES / f"{role}.toml").read_text()
    env = example_secrets(tmp_path) if uses_password_file else {}
    config = load_config(ROLES[role], EXAMPLES / f"{role}.toml", role, env)
    assert config.site.id == "hq"  # type: ignore[attr-defined]


def test_edge_example_values_are_read(tmp_path: Path) -> None:
    config = load_config(EdgeConfig, EXAMPLES / "edge.toml", "edge", example_secrets(tmp_path))
    assert config.device.id == "door-1"
    assert config.mqtt.tls.enabled and config.mqtt.tls.ca_file == Path("/etc/rollcall/ca.crt")
    assert config.camera.source == "picamera2"
    assert config.site.timezone == "Europe/London"


def test_every_bad_key_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "[site]",  # 1
            'timezone = "Mars/Olympus"',  # 2
            "[mqtt]",  # 3
            "port = 70000",  # 4
            'hots = "typo"',  # 5
            "[device]",  # 6
            "name = 5",  # 7
            "[camera]",  # 8
            'fps = "ten"',  # 9
        ]
    )
    problems = _problems(EdgeConfig, text, tmp_path)
    found = {(p.key, p.line) for p in problems}
    assert found == {
        ("site.timezone", 2),
        ("mqtt.port", 4),
        ("mqtt.hots", 5),
        ("device.id", 6),
        ("device.name", 7),
        ("camera.fps", 9),
    }
    by_key = {p.key: p for p in problems}
    assert "unknown time zone" in by_key["site.timezone"].problem
    assert "65535" in by_key["mqtt.port"].problem
    assert "unknown key" in by_key["mqtt.hots"].problem and "host" in by_key["mqtt.hots"].problem
    assert "missing" in by_key["device.id"].problem
    assert [p.line for p in problems] == sorted(p.line or 0 for p in problems)


def test_nested_tables_and_arrays_of_tables_are_located() -> None:
    text = '[a]\nx = 1\n\n[a.b]\ny = """\nmulti\n"""\nz = 2\n[[c]]\nq = 1\n[[c]]\nq = 2\n'
    lines = locate_keys(text)
    assert lines[("a", "x")] == 2
    assert lines[("a", "b")] == 4
    assert lines[("a", "b", "y")] == 5
    assert lines[("a", "b", "z")] == 8
    assert lines[("c", 1, "q")] == 12


def test_cross_key_rules_name_the_table(tmp_path: Path) -> None:
    (password,) = _problems(EdgeConfig, '[device]\nid = "d1"\n[mqtt]\npassword = "secret"\n', tmp_path)
    assert (password.key, password.line) == ("mqtt", 3)
    assert "needs a username" in password.problem
    (tls,) = _problems(EdgeConfig, '[device]\nid = "d1"\n[mqtt.tls]\ncert_file = "/c.pem"\n', tmp_path)
    assert (tls.key, tls.line) == ("mqtt.tls", 3)
    assert "cert_file and key_file go together" in tls.problem


def test_environment_overrides_apply_and_are_named_when_bad(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[device]\nid = "door-1"\n')
    env = {"ROLLCALL_EDGE__MQTT__HOST": "broker.lan", "ROLLCALL_EDGE__MQTT__PORT": "1884"}
    config = load_config(EdgeConfig, path, "edge", env)
    assert (config.mqtt.host, config.mqtt.port) == ("broker.lan", 1884)

    env["ROLLCALL_EDGE__OUTBOX__MAX_MB"] = "-5"
    with pytest.raises(ConfigError) as caught:
        load_config(EdgeConfig, path, "edge", env)
    (problem,) = caught.value.problems
    assert problem.source == "environment ROLLCALL_EDGE__OUTBOX__MAX_MB"
    assert problem.key == "outbox.max_mb"


def test_other_roles_overrides_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[device]\nid = "door-1"\n')
    config = load_config(EdgeConfig, path, "edge", {"ROLLCALL_HUB__MQTT__PORT": "1"})
    assert config.mqtt.port == 1883


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("[device\nid = 1", "not valid TOML"),
    ],
)
def test_unreadable_files_are_reported(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "edge.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(EdgeConfig, path, "edge", {})
    assert expected in str(caught.value)


def test_strict_types_refuse_quoted_numbers_and_bools(tmp_path: Path) -> None:
    problems = _problems(EdgeConfig, '[device]\nid = "d"\n[mqtt]\nport = "1883"\n[files]\n', tmp_path)
    keys = {p.key for p in problems}
    assert "mqtt.port" in keys
    assert "files" in keys  # an unknown table is an unknown key too


def test_bad_ids_are_refused(tmp_path: Path) -> None:
    problems = _problems(EdgeConfig, '[device]\nid = "door/1"\n', tmp_path)
    assert problems[0].key == "device.id" and "not valid" in problems[0].problem


def test_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = MqttSettings(username="door-1", password_file=secret)
    assert settings.resolved_password() == "s3cret"


def test_client_id_is_fixed_per_entity_unless_configured() -> None:
    assert MqttSettings().client_id_for("edge", "door-1") == "edge-door-1"
    assert MqttSettings(client_id="custom").client_id_for("edge", "door-1") == "custom"


def test_hub_alert_overrides_are_checked_against_the_rules(tmp_path: Path) -> None:
    problems = _problems(HubConfig, "[alerts.absent]\nafter_mins = 3\n[alerts.nonsense]\nenabled = true\n", tmp_path)
    assert len(problems) == 1 and problems[0].key == "alerts"
    assert "alerts.absent.after_mins: unknown setting" in problems[0].problem
    config = load_config(HubConfig, EXAMPLES / "hub.toml", "hub", example_secrets(tmp_path))
    assert config.schedule.friday == ["08:00-12:00", "13:00-16:00"] and config.alerts["absent"]["after_min"] == 45
