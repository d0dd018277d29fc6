"""Hostile and broken input refused with a message, never a traceback: deep JSON and TOML, bad keys, bad CLI args."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from edge.agent.config import AgentConfig
from edge.door.config import EdgeConfig
from edge.protocol import wire
from edge.protocol.config import ConfigError, deep_nesting_line, load_config
from hub.config import HubConfig
from rollcall.cli import main
from tui.config import TuiConfig

T = wire.Topics("hq")
DEEP_ARRAY = "[" * 5000 + "]" * 5000
"""Ten kilobytes that make a recursive parser give up: the probe's nested-JSON message."""
ROLES: dict[str, type[BaseModel]] = {"edge": EdgeConfig, "agent": AgentConfig, "hub": HubConfig, "tui": TuiConfig}


# --- nested JSON on the wire ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        DEEP_ARRAY,
        '{"v": 1, "device": ' + DEEP_ARRAY + "}",
        '{"v": 1, "device": ' + "[" * 300 + "]" * 300 + "}",  # deep enough for pydantic, not for Python
        '{"v": 1, "x": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}",
    ],
    ids=["bare-array", "array-in-object", "moderately-deep", "deep-objects"],
)
def test_deeply_nested_json_is_a_wire_error(raw: str) -> None:
    topic = T.device_event("door-1")
    with pytest.raises(wire.WireError) as info:
        wire.decode(topic, raw.encode())
    assert info.value.field == "<payload>"
    assert "nested too deeply" in info.value.problem
    with pytest.raises(wire.WireError, match="nested too deeply"):
        wire.decode_as(wire.Event, raw)


def test_wire_decode_command_reports_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP_ARRAY)
    assert main(["wire", "decode", T.device_event("door-1"), str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().err


# --- nested TOML in a config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLES))
def test_deeply_nested_toml_is_a_config_problem_with_its_line(role: str, tmp_path: Path) -> None:
    path = tmp_path / f"{role}.toml"
    path.write_text(f'[site]\nid = "hq"\n\n[mqtt]\nhost = {DEEP_ARRAY}\n')
    with pytest.raises(ConfigError) as info:
        load_config(ROLES[role], path, role, {})
    (problem,) = info.value.problems
    assert (problem.source, problem.line) == (str(path), 5)
    assert "nested too deeply" in problem.problem


def test_deeply_nested_inline_tables_are_a_config_problem(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[hub]\nx = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as info:
        load_config(HubConfig, path, "hub", {})
    assert info.value.problems[0].line == 2


def test_deeply_nested_environment_override_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(HubConfig, None, "hub", {"ROLLCALL_HUB__MQTT__HOST": DEEP_ARRAY})
    (problem,) = info.value.problems
    assert problem.source == "environment ROLLCALL_HUB__MQTT__HOST"
    assert "nested too deeply" in problem.problem


@pytest.mark.parametrize("role", sorted(ROLES))
def test_check_config_reports_deep_nesting_and_exits_2(
    role: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{role}.toml"
    path.write_text(f"[mqtt]\nhost = {DEEP_ARRAY}\n")
    assert main([role, "check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and "nested too deeply" in err
    assert "Traceback" not in err


def test_moderately_nested_toml_is_an_ordinary_type_problem(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[mqtt]\nhost = " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(HubConfig, path, "hub", {})
    assert [(p.key, p.line) for p in info.value.problems] == [("mqtt.host", 2)]
    json.dumps(str(info.value))  # the message is plain text of reasonable form


def test_the_nesting_scan_skips_strings_and_comments() -> None:
    brackets = "[" * 100
    text = "\n".join(
        [
            "[site]",
            f'id = "{brackets}"  # {brackets}',
            f"pattern = '{brackets}'",
            f'notes = """\n{brackets}\n"""',
            "[mqtt]",
            f"host = {DEEP_ARRAY}",
        ]
    )
    assert deep_nesting_line(text) == 8
    assert deep_nesting_line(text.rsplit("\n", 1)[0]) is None
