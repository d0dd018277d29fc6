"""Typed configuration machinery shared by every role: TOML with line numbers, environment overrides, reports.

A role's config is a pydantic model. :func:`load_config` reads a TOML file, applies environment overrides named
``ROLLCALL_<ROLE>__<SECTION>__<KEY>`` (the value is read as a TOML value, else as a string) and validates the
whole thing at once. Every problem becomes one :class:`ConfigProblem` naming the key, the line (or the
environment variable) it came from, and what is expected; :class:`ConfigError` carries them all.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from edge.protocol.wire import DEFAULT_PREFIX, PREFIX_RE, check_id

ModelT = TypeVar("ModelT", bound=BaseModel)


def _to_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return Path(value).expanduser()
    return value


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return value


def _check_entity_id(value: str) -> str:
    return check_id(value)


ConfigPath = Annotated[Path, BeforeValidator(_to_path)]
"""A filesystem path written as a string in TOML; ``~`` is expanded."""
EntityIdSetting = Annotated[str, AfterValidator(_check_entity_id)]
ClientIdSetting = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""An MQTT client id: an id's characters, but never a topic level, so the words ``hub`` etc. are allowed (the hub's
identity on a provisioned site is ``hub``)."""
TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    """Base of every config table: strict types, unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SiteSettings(Section):
    """Which site this process belongs to; the site id is part of every topic."""

    id: EntityIdSetting = "main"
    topic_prefix: Annotated[str, Field(pattern=PREFIX_RE.pattern)] = DEFAULT_PREFIX
    timezone: TimeZoneName = "UTC"


class TlsSettings(Section):
    """TLS to the broker: CA to trust, optional client certificate and key."""

    enabled: bool = False
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        return self

    def problems(self) -> list[str]:
        """With TLS on, what is wrong with its files: unreadable, a CA that does not load, a certificate and key apart.

        Checked by check-config and before the TUI starts, not when a config is parsed (a config may be written
        before its certificates arrive).
        """
        import ssl

        if not self.enabled:
            return []
        found: list[str] = []
        for key in ("ca_file", "cert_file", "key_file"):
            path: Path | None = getattr(self, key)
            if path is not None and not os.access(path, os.R_OK):
                why = "no such file" if not path.exists() else "cannot read"
                found.append(f"mqtt.tls.{key}: {why} {path}; fix the path, or the file's owner and mode")
        if found:
            return found
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_file))
            except (ssl.SSLError, OSError, ValueError) as exc:
                found.append(f"mqtt.tls.ca_file: {self.ca_file} holds no usable CA certificate ({exc})")
        if self.cert_file is not None and self.key_file is not None:
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (ssl.SSLError, OSError) as exc:
                found.append(
                    f"mqtt.tls.cert_file and key_file: {self.cert_file} and {self.key_file} are not a certificate "
                    f"and its private key ({exc})"
                )
        return found

    def warnings(self) -> list[str]:
        """A client key that others may read."""
        if self.enabled and self.key_file is not None and (mode := _open_to_others(self.key_file)):
            return [
                f"mqtt.tls.key_file: {self.key_file} is readable by group or others ({mode}); "
                f"run: chmod 600 {self.key_file}"
            ]
        return []


def _open_to_others(path: Path) -> str | None:
    """``mode 0644`` when group or others may read or write ``path``; None when only its owner may (or unknown)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return f"mode {mode:04o}" if mode & 0o077 else None


def _readable_password_file(value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        first = value.read_text(encoding="utf-8").splitlines()[:1]
    except FileNotFoundError:
        raise ValueError(
            f"no such file {value}; create it with the broker password on its first line (chmod 600), or fix the path"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {value}: {getattr(exc, 'strerror', None) or exc}") from None
    if not first or not first[0]:
        raise ValueError(f"{value} has no password on its first line")
    return value


class MqttSettings(Section):
    """How to reach the broker."""

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Port = 1883
    keepalive_s: Annotated[int, Field(ge=2, le=3600)] = 30
    client_id: ClientIdSetting | None = None
    username: str | None = None
    password: str | None = None
    password_file: Annotated[ConfigPath | None, AfterValidator(_readable_password_file)] = None
    """First line: the password. Checked when the config is loaded: a missing file is a config problem."""
    reconnect_min_s: Annotated[int, Field(ge=1, le=3600)] = 1
    reconnect_max_s: Annotated[int, Field(ge=1, le=3600)] = 60
    tls: TlsSettings = TlsSettings()

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def client_id_for(self, role: str, entity: str) -> str:
        """The configured fixed client id, or ``<role>-<entity>`` (stable across restarts: persistent session)."""
        return self.client_id or f"{role}-{entity}"

    def resolved_password(self) -> str | None:
        """The password from ``password`` or from the first line of ``password_file``.

        A password file that went missing since the config was loaded raises OSError naming it: connecting without
        the password would only be refused as "not authorised", again and again, without saying why.
        """
        if self.password_file is not None:
            try:
                lines = self.password_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise OSError(
                    exc.errno, f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror or exc}"
                ) from None
            return lines[0] if lines else ""
        return self.password

    def warnings(self) -> list[str]:
        """What works but should not stay so: a password file others may read."""
        found = self.tls.warnings()
        if self.password_file is not None and (mode := _open_to_others(self.password_file)):
            found.append(
                f"mqtt.password_file: {self.password_file} is readable by group or others ({mode}); "
                f"run: chmod 600 {self.password_file}"
            )
        return found


# --- locating keys in the TOML text ----------------------------------------------------------------------------

_TABLE_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return [p.strip("\"'") for p in parts]


def locate_keys(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path in TOML ``text`` to the 1-based line that defines it (tables to their header line)."""
    lines: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str | int, ...], int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        table_match = _TABLE_RE.match(line)
        if table_match:
            path: tuple[str | int, ...] = tuple(_split_key(table_match[2]))
            if table_match[1] == "[[":
                index = array_counts.get(path, 0)
                array_counts[path] = index + 1
                path = (*path, index)
            table = path
            lines.setdefault(table, number)
            continue
        key_match = _KEY_RE.match(line)
        if key_match:
            lines[(*table, *_split_key(key_match[1]))] = number
            rest = line[key_match.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


NESTED_TOO_DEEPLY = "arrays or inline tables nested too deeply (no setting nests more than a few levels)"
_DEEP = 64
"""Nesting deeper than this marks the value that made the TOML parser give up (real configs nest two or three)."""


def deep_nesting_line(text: str) -> int | None:
    """The 1-based line where the value that nests arrays or inline tables more than ``_DEEP`` levels begins.

    A light scan for the error message only: brackets inside strings and comments are skipped, and a value that
    spans lines is named by the line it starts on. None when nothing nests that deep.
    """
    depth = 0
    value_line = 1
    quote: str | None = None
    number = 1
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\n":
            number += 1
        elif quote is not None:
            if text.startswith(quote, index):
                index += len(quote)
                quote = None
                continue
            if char == "\\" and quote in {'"', '"""'}:  # an escape: the next character cannot end the string
                number += text.startswith("\n", index + 1)
                index += 2
                continue
        elif char == "#":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif char in {'"', "'"}:
            quote = char * 3 if text.startswith(char * 3, index) else char
            index += len(quote)
            continue
        elif char in "[{":
            if depth == 0:
                value_line = number
            depth += 1
            if depth > _DEEP:
                return value_line
        elif char in "]}":
            depth = max(depth - 1, 0)
        index += 1
    return None


# --- problems and loading --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One bad key: where it came from, which key, and what is expected."""

    source: str
    key: str
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.key}: {self.problem}"


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` lists every bad key."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys a table at ``loc`` accepts, for 'unknown key' messages."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", None) or ()
        candidates = [annotation, *args]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            for c in args:
                inner = getattr(c, "__args__", None) or ()
                nested += [i for i in inner if isinstance(i, type) and issubclass(i, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        expected = _fields_at(model, loc[:-1])
        return "unknown key" + (f"; expected one of: {', '.join(expected)}" if expected else "")
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    shown = repr(error.get("input"))
    if (
        "input" in error
        and not isinstance(error["input"], dict)
        and shown not in message
        and str(error["input"]) not in message
    ):
        message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"  # a value, not a wall of text
    return message


def env_overrides(role: str, environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, Any]]:
    """Overrides from ``ROLLCALL_<ROLE>__A__B=value``: key path → (variable name, parsed value)."""
    prefix = f"ROLLCALL_{role.upper()}__"
    found: dict[tuple[str, ...], tuple[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix) or name == prefix:
            continue
        path = tuple(part.lower() for part in name[len(prefix) :].split("__"))
        try:
            value: Any = tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError:
            value = raw  # plain words (host names, paths) need no TOML quoting
        except RecursionError:
            # Read as a plain string it would pass as e.g. a host name: refuse it instead.
            raise ConfigError([ConfigProblem(f"environment {name}", _dotted(path), NESTED_TOO_DEEPLY)]) from None
        found[path] = (name, value)
    return found


def _apply(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def load_config(
    model: type[ModelT],
    path: Path | None,
    role: str,
    environ: Mapping[str, str] | None = None,
) -> ModelT:
    """Load and validate ``model`` from TOML at ``path`` (None: defaults only) plus environment overrides.

    Raises :class:`ConfigError` listing every problem, each with the file line or the variable it came from.
    """
    environ = os.environ if environ is None else environ
    source = str(path) if path is not None else "<defaults>"
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([ConfigProblem(source, "<file>", "no such file; pass an existing TOML file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigProblem(source, "<file>", f"cannot read it: {exc}")]) from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(source, "<file>", f"not valid TOML: {exc}")]) from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few kilobytes of brackets exhaust the stack.
        line = deep_nesting_line(text)
        keys_at_line = {number: path for path, number in locate_keys(text).items()}
        key = _dotted(keys_at_line[line]) if line is not None and line in keys_at_line else "<file>"
        raise ConfigError([ConfigProblem(source, key, f"not valid TOML: {NESTED_TOO_DEEPLY}", line)]) from None
    key_lines = locate_keys(text)
    overrides = env_overrides(role, environ)
    for key_path, (_, value) in overrides.items():
        _apply(data, key_path, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: list[ConfigProblem] = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            origin, line = source, None
            for key_path, (variable, _) in overrides.items():
                if loc[: len(key_path)] == key_path or key_path[: len(loc)] == loc:
                    origin = f"environment {variable}"
                    break
            else:
                line = next((key_lines[loc[:cut]] for cut in range(len(loc), 0, -1) if loc[:cut] in key_lines), None)
            problems.append(ConfigProblem(origin, _dotted(loc), _describe(error, model), line))
        # File order first (as a person reads the file), then what came from the environment or has no line.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems) from None


def config_problems(config: BaseModel) -> list[str]:
    """Problems a parsed config still has with the files it names (today: the TLS CA, certificate and key)."""
    mqtt = getattr(config, "mqtt", None)
    return mqtt.tls.problems() if isinstance(mqtt, MqttSettings) else []


def config_warnings(config: BaseModel) -> list[str]:
    """Warnings about a loaded config that works but should not stay so (today: the MQTT password file's mode)."""
    mqtt = getattr(config, "mqtt", None)
    return mqtt.warnings() if isinstance(mqtt, MqttSettings) else []
