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


# --- tracebacks that became messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_wire_decode_of_an_unreadable_file_says_so(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing.json" if kind == "missing" else tmp_path
    assert main(["wire", "decode", T.device_event("door-1"), str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {target}" in err


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_broker_port_out_of_range_is_refused(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["broker", "--port", port])
    assert info.value.code == 2
    assert "a TCP port from 1 to 65535" in capsys.readouterr().err


def test_broker_on_an_address_it_cannot_bind_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from rollcall.broker import free_port

    assert main(["broker", "--host", "192.0.2.1", "--port", str(free_port())]) == 1  # TEST-NET-1: not this machine's
    err = capsys.readouterr().err
    assert "rollcall broker: cannot listen on 192.0.2.1:" in err


def _secret(path: Path, mode: int, text: str = "s3cret\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _edge_config(tmp_path: Path, mqtt: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'[device]\nid = "door-1"\n\n[mqtt]\nusername = "door-1"\n{mqtt}\n')
    return path


def test_a_missing_password_file_is_a_config_problem_naming_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "mqtt.password"
    path = _edge_config(tmp_path, f'password_file = "{missing}"')
    assert main(["edge", "check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: mqtt.password_file: no such file {missing}" in err


def test_an_empty_password_file_is_a_config_problem(tmp_path: Path) -> None:
    empty = _secret(tmp_path / "mqtt.password", 0o600, "\n")
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: .*no password on its first line"):
        load_config(EdgeConfig, _edge_config(tmp_path, f'password_file = "{empty}"'), "edge", {})


def test_a_password_file_open_to_others_passes_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _secret(tmp_path / "mqtt.password", 0o644)
    path = _edge_config(tmp_path, f'password_file = "{secret}"')
    assert main(["edge", "check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.out
    assert f"warning: mqtt.password_file: {secret} is readable by group or others (mode 0644)" in captured.err
    assert f"chmod 600 {secret}" in captured.err
    secret.chmod(0o600)
    assert main(["edge", "check-config", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_password_is_read_from_the_file_and_never_silently_dropped(tmp_path: Path) -> None:
    secret = _secret(tmp_path / "mqtt.password", 0o600)
    config = load_config(EdgeConfig, _edge_config(tmp_path, f'password_file = "{secret}"'), "edge", {})
    assert config.mqtt.resolved_password() == "s3cret"
    secret.unlink()  # gone after the config was checked: say so, do not connect without a password
    with pytest.raises(OSError, match=str(secret)):
        config.mqtt.resolved_password()


def test_demo_port_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--port", "99999", "--no-tui"])
    assert info.value.code == 2
    assert "a TCP port from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["hub", "run"], ["hub", "rotate-key"], ["report", "events"]])
def test_hub_commands_on_a_data_folder_that_cannot_exist_say_so(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a file where the data folder should be: it can never be made
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\ndatabase = "{blocker / "rollcall.db"}"\ndata_dir = "{blocker}"\nkey_file = "{blocker / "hub.key"}"\n'
    )
    status: int | str | None
    try:
        status = main([*command, "--config", str(path)])
    except SystemExit as exit_:  # the report commands leave through SystemExit
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert str(blocker) in err  # `hub run` names the path that failed (the file in the folder's place), others the db
    assert "HubConfig" not in err and "SiteSettings(" not in err, "the message names the file, not the whole config"


def test_a_gallery_with_a_deeply_nested_header_is_a_gallery_error() -> None:
    import struct
    import zlib

    from edge.recognition.gallery_codec import MAGIC, GalleryError, decode_gallery

    header = DEEP_ARRAY.encode()
    blob = zlib.compress(struct.pack("<4sI", MAGIC, len(header)) + header)
    with pytest.raises(GalleryError, match="nested too deeply"):
        decode_gallery(blob)
