"""Model manifest, models directory, verification and download of model packs (the ``rollcall models`` command)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, TextIO, cast

if TYPE_CHECKING:
    import argparse
    import urllib.request
    import zipfile

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "ROLLCALL_MODEL_DIR"
"""Environment variable naming the folder that holds the model files."""
BASE_URL_ENV = "ROLLCALL_MODEL_BASE_URL"
"""Environment variable naming a mirror: its scheme, host and path prefix replace those of every download URL."""
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.toml"
"""The manifest in a source checkout (and an editable install)."""
INSTALLED_MANIFEST = Path(sys.prefix) / "share" / "rollcall" / "models" / "manifest.toml"
"""Where a wheel installs the same file (pyproject's data-files)."""


def default_manifest_path() -> Path:
    """The checkout's manifest when there is one, else the installed copy."""
    return DEFAULT_MANIFEST if DEFAULT_MANIFEST.is_file() else INSTALLED_MANIFEST


"""The manifest shipped in the repository's top-level ``models/`` folder."""
SCHEMA_VERSION = 1
CHUNK_BYTES = 256 * 1024
USER_AGENT = "rollcall-models/1"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

Kind = Literal["detector", "recogniser"]
Family = Literal["scrfd", "yunet", "arcface"]
Colour = Literal["rgb", "bgr"]
Runtime = Literal["onnxruntime", "opencv"]
FetchAction = Literal["present", "downloaded", "extracted"]
ProgressCallback = Callable[[str, int, "int | None"], None]
"""``progress(name, bytes_done, bytes_total_or_None)``; ``bytes_done`` counts resumed bytes too."""

NO_DIR_HELP = (
    f"set {MODEL_DIR_ENV}=/path/to/models (a folder holding the .onnx files), or `models.dir` in the edge config, "
    "or run `rollcall models fetch PACK --dir DIR` to download a pack into DIR"
)

_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PACK_NAME_RE = re.compile(r"[a-z0-9_.-]{1,64}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class ModelError(Exception):
    """A model problem a person can fix: missing directory or file, bad download, unknown pack."""


class ManifestError(ModelError):
    """A manifest that cannot be used; ``problems`` lists every bad key with its line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"{source}: {count} problem{'s' if count != 1 else ''} in the model manifest:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


# --- the manifest -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One model file: how to check it, how to feed it, where to get it (see models/manifest.toml)."""

    name: str
    kind: Kind
    family: Family
    sha256: str
    size: int | None
    url: str
    licence: str
    commercial_use: bool
    runtime: Runtime
    input_name: str
    input_shape: tuple[int, ...]
    colour: Colour
    mean: float
    std: float
    embedding_size: int | None = None
    archive: str | None = None
    member: str | None = None
    source: str = ""
    outputs: tuple[str, ...] = ()
    io_verified: bool = False
    notes: str = ""

    def path_in(self, model_dir: Path) -> Path:
        """Where this file lives in a models directory."""
        return model_dir / self.name

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """Fixed input (height, width), or None where the model takes any size (dynamic dimensions)."""
        height, width = self.input_shape[-2], self.input_shape[-1]
        return (height, width) if height > 0 and width > 0 else None

    @property
    def scale(self) -> float:
        """``1 / std``: multiply ``(pixel - mean)`` by this."""
        return 1.0 / self.std


@dataclass(frozen=True, slots=True)
class ModelPack:
    """A detector and a recogniser that run together."""

    name: str
    description: str
    detector: str
    recogniser: str
    licence: str


@dataclass(frozen=True)
class Manifest:
    """Every model file and pack rollcall knows, as read from a manifest file."""

    files: Mapping[str, ModelFile]
    packs: Mapping[str, ModelPack]
    default_pack: str
    source: Path | None = None

    def pack(self, name: str | None = None) -> ModelPack:
        """The pack called ``name`` (None: the default pack); ModelError naming the known packs otherwise."""
        key = self.default_pack if name is None else name
        try:
            return self.packs[key]
        except KeyError:
            known = ", ".join(sorted(self.packs))
            raise ModelError(f"unknown model pack {key!r}; known packs: {known}") from None

    def files_of(self, pack: str | None = None) -> tuple[ModelFile, ModelFile]:
        """(detector, recogniser) of a pack."""
        chosen = self.pack(pack)
        return self.files[chosen.detector], self.files[chosen.recogniser]

    def detector_of(self, pack: str | None = None) -> ModelFile:
        """The detector file of a pack."""
        return self.files_of(pack)[0]

    def recogniser_of(self, pack: str | None = None) -> ModelFile:
        """The recogniser file of a pack."""
        return self.files_of(pack)[1]


def _key_name(path: tuple[str, ...]) -> str:
    return ".".join(part if _BARE_KEY_RE.fullmatch(part) else f'"{part}"' for part in path)


class _Checker:
    """Collects manifest problems, each naming its key and (where known) its line."""

    def __init__(self, source: str, key_lines: Mapping[tuple[str | int, ...], int]) -> None:
        self.source = source
        self.key_lines = key_lines
        self.problems: list[str] = []

    def fail(self, path: tuple[str, ...], message: str) -> None:
        line = next(
            (self.key_lines[path[:cut]] for cut in range(len(path), 0, -1) if path[:cut] in self.key_lines), None
        )
        where = f"line {line}: " if line is not None else ""
        self.problems.append(f"{where}{_key_name(path)}: {message}")

    def table(self, data: Mapping[str, Any], path: tuple[str, ...], allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in data:
            if key not in allowed:
                self.fail((*path, key), f"unknown key; expected one of: {', '.join(allowed)}")

    def text(
        self,
        data: Mapping[str, Any],
        path: tuple[str, ...],
        key: str,
        *,
        required: bool = True,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        expected: str = "",
    ) -> str | None:
        if key not in data:
            if required:
                self.fail((*path, key), "required key is missing")
            return None
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            self.fail((*path, key), f"must be a non-empty string (got {value!r})")
            return None
        if choices and value not in choices:
            self.fail((*path, key), f"must be one of {', '.join(repr(c) for c in choices)} (got {value!r})")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail((*path, key), f"must be {expected} (got {value!r})")
            return None
        return value

    def integer(self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, required: bool = True) -> int | None:
        if key not in data:
            if required:
                self.fail((*path, key), "required key is missing")
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail((*path, key), f"must be a positive whole number (got {value!r})")
            return None
        return value

    def number(self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, positive: bool = False) -> float:
        if key not in data:
            self.fail((*path, key), "required key is missing")
            return 1.0
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or (positive and value <= 0):
            self.fail((*path, key), f"must be a {'positive ' if positive else ''}number (got {value!r})")
            return 1.0
        return float(value)

    def flag(self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, required: bool = True) -> bool:
        if key not in data:
            if required:
                self.fail((*path, key), "required key is missing (true or false)")
            return False
        value = data[key]
        if not isinstance(value, bool):
            self.fail((*path, key), f"must be true or false (got {value!r})")
            return False
        return value

    def url(self, data: Mapping[str, Any], path: tuple[str, ...], key: str) -> str | None:
        from urllib.parse import urlsplit

        value = self.text(data, path, key)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or not parts.path.strip("/"):
            self.fail((*path, key), f"must be an https:// URL of a file (got {value!r})")
            return None
        return value


_FILE_KEYS = (
    "kind",
    "family",
    "sha256",
    "size",
    "url",
    "archive",
    "member",
    "licence",
    "commercial_use",
    "source",
    "runtime",
    "input_name",
    "input_shape",
    "colour",
    "mean",
    "std",
    "embedding_size",
    "outputs",
    "io_verified",
    "notes",
)
_PACK_KEYS = ("description", "detector", "recogniser", "licence")
_TOP_KEYS = ("schema", "default_pack", "files", "packs")


def _parse_file(check: _Checker, name: str, data: Mapping[str, Any]) -> ModelFile | None:
    path = ("files", name)
    before = len(check.problems)
    if not _FILE_NAME_RE.fullmatch(name) or ".." in name:
        check.fail(path, "file names are plain names: letters, digits, '.', '_' or '-', no folders")
    check.table(data, path, _FILE_KEYS)
    kind = check.text(data, path, "kind", choices=("detector", "recogniser"))
    family = check.text(data, path, "family", choices=("scrfd", "yunet", "arcface"))
    sha256 = check.text(data, path, "sha256", pattern=_SHA256_RE, expected="64 lowercase hex digits")
    size = check.integer(data, path, "size", required=False)
    url = check.url(data, path, "url")
    archive = check.text(
        data,
        path,
        "archive",
        required=False,
        pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.zip"),
        expected="a plain file name ending in .zip",
    )
    member = check.text(data, path, "member", required=False)
    if ("archive" in data) != ("member" in data):
        check.fail(path, "archive and member go together: set both for a file inside a zip, or neither")
    licence = check.text(data, path, "licence")
    commercial_use = check.flag(data, path, "commercial_use")
    source = check.text(data, path, "source", required=False) or ""
    runtime = check.text(data, path, "runtime", required=False, choices=("onnxruntime", "opencv")) or "onnxruntime"
    input_name = check.text(data, path, "input_name")
    shape_value = data.get("input_shape")
    shape: tuple[int, ...] = ()
    if shape_value is None:
        check.fail((*path, "input_shape"), "required key is missing")
    elif (
        not isinstance(shape_value, list)
        or len(shape_value) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape_value)
    ):
        check.fail((*path, "input_shape"), f"must be 4 dimensions (NCHW), each positive or -1 (got {shape_value!r})")
    else:
        shape = tuple(shape_value)
    colour = check.text(data, path, "colour", choices=("rgb", "bgr"))
    mean = check.number(data, path, "mean")
    std = check.number(data, path, "std", positive=True)
    embedding_size = check.integer(data, path, "embedding_size", required=kind == "recogniser")
    if kind == "detector" and "embedding_size" in data:
        check.fail((*path, "embedding_size"), "only recognisers have an embedding size")
    outputs_value = data.get("outputs", [])
    if not isinstance(outputs_value, list) or not all(isinstance(o, str) and o for o in outputs_value):
        check.fail((*path, "outputs"), f"must be a list of output names (got {outputs_value!r})")
        outputs_value = []
    io_verified = check.flag(data, path, "io_verified", required=False)
    notes = check.text(data, path, "notes", required=False) or ""
    if len(check.problems) > before:
        return None
    assert kind and family and sha256 and url and licence and input_name and colour  # checked above
    return ModelFile(
        name=name,
        kind=cast(Kind, kind),
        family=cast(Family, family),
        sha256=sha256,
        size=size,
        url=url,
        licence=licence,
        commercial_use=commercial_use,
        runtime=cast(Runtime, runtime),
        input_name=input_name,
        input_shape=shape,
        colour=cast(Colour, colour),
        mean=mean,
        std=std,
        embedding_size=embedding_size,
        archive=archive,
        member=member,
        source=source,
        outputs=tuple(outputs_value),
        io_verified=io_verified,
        notes=notes,
    )


def _parse_pack(check: _Checker, name: str, data: Mapping[str, Any], files: Mapping[str, Any]) -> ModelPack | None:
    path = ("packs", name)
    before = len(check.problems)
    if not _PACK_NAME_RE.fullmatch(name):
        check.fail(path, "pack names are 1-64 lowercase letters, digits, '.', '_' or '-'")
    check.table(data, path, _PACK_KEYS)
    description = check.text(data, path, "description")
    licence = check.text(data, path, "licence")
    chosen: dict[str, str] = {}
    for role, kind in (("detector", "detector"), ("recogniser", "recogniser")):
        file_name = check.text(data, path, role)
        if file_name is None:
            continue
        entry = files.get(file_name)
        if not isinstance(entry, dict):
            check.fail((*path, role), f"names {file_name!r}, which is not in [files]")
        elif entry.get("kind") != kind:
            check.fail((*path, role), f"{file_name!r} is a {entry.get('kind')!r}, not a {kind}")
        else:
            chosen[role] = file_name
    if len(check.problems) > before:
        return None
    assert description and licence
    return ModelPack(name, description, chosen["detector"], chosen["recogniser"], licence)


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """Parse and validate manifest TOML; ManifestError lists every problem with its key and line."""
    from edge.protocol.config import locate_keys

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(source, [f"not valid TOML: {exc}"]) from None
    check = _Checker(source, locate_keys(text))
    check.table(data, (), _TOP_KEYS)
    if data.get("schema") != SCHEMA_VERSION:
        check.fail(("schema",), f"must be {SCHEMA_VERSION} (got {data.get('schema')!r})")
    raw_files = data.get("files")
    raw_packs = data.get("packs")
    if not isinstance(raw_files, dict) or not raw_files:
        check.fail(("files",), 'needs at least one [files."NAME"] table')
        raw_files = {}
    if not isinstance(raw_packs, dict) or not raw_packs:
        check.fail(("packs",), "needs at least one [packs.NAME] table")
        raw_packs = {}
    files: dict[str, ModelFile] = {}
    for name, entry in raw_files.items():
        if not isinstance(entry, dict):
            check.fail(("files", name), "must be a table")
            continue
        parsed = _parse_file(check, name, entry)
        if parsed is not None:
            files[name] = parsed
    archive_urls: dict[str, tuple[str, str]] = {}
    for model in files.values():
        if model.archive is None:
            continue
        first = archive_urls.setdefault(model.archive, (model.url, model.name))
        if first[0] != model.url:
            check.fail(
                ("files", model.name, "url"),
                f"archive {model.archive!r} is downloaded from {first[0]} for {first[1]!r}; one archive, one URL",
            )
    packs: dict[str, ModelPack] = {}
    for name, entry in raw_packs.items():
        if not isinstance(entry, dict):
            check.fail(("packs", name), "must be a table")
            continue
        pack = _parse_pack(check, name, entry, raw_files)
        if pack is not None:
            packs[name] = pack
    default_pack = data.get("default_pack")
    if not isinstance(default_pack, str):
        check.fail(("default_pack",), f"required: the name of a pack (got {default_pack!r})")
    elif default_pack not in raw_packs:
        check.fail(("default_pack",), f"names {default_pack!r}, which is not in [packs]")
    if check.problems:
        raise ManifestError(source, check.problems)
    return Manifest(files=files, packs=packs, default_pack=cast(str, default_pack))


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate a manifest file (default: the repository's ``models/manifest.toml``)."""
    target = default_manifest_path() if path is None else path
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (
            "this installation has neither the checkout's models/ folder nor the installed "
            "share/rollcall/models/manifest.toml: reinstall rollcall"
            if path is None
            else "pass an existing manifest file"
        )
        raise ModelError(f"model manifest not found: {target}; {hint} (or pass --manifest FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the model manifest {target}: {exc}") from None
    return dataclasses.replace(parse_manifest(text, str(target)), source=target)


# --- the models directory ---------------------------------------------------------------------------------------


def _resolve_dir(
    configured: Path | None, environ: Mapping[str, str] | None, configured_from: str, must_exist: bool
) -> tuple[Path, str]:
    environ = os.environ if environ is None else environ
    if configured is not None:
        path, origin = configured.expanduser(), configured_from
    elif environ.get(MODEL_DIR_ENV, "").strip():
        path, origin = Path(environ[MODEL_DIR_ENV].strip()).expanduser(), MODEL_DIR_ENV
    else:
        raise ModelError(f"no models directory is configured: {NO_DIR_HELP}")
    if path.exists() and not path.is_dir():
        raise ModelError(f"the models directory {path} (from {origin}) is not a folder; {NO_DIR_HELP}")
    if must_exist and not path.is_dir():
        raise ModelError(f"the models directory {path} (from {origin}) does not exist; {NO_DIR_HELP}")
    return path, origin


def resolve_model_dir(
    configured: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    configured_from: str = "models.dir",
    must_exist: bool = True,
) -> Path:
    """The models directory: ``configured`` (``models.dir``) if set, else ``$ROLLCALL_MODEL_DIR``.

    Raises ModelError telling how to set one when neither is set, or when it is missing (``must_exist``) or a file.
    """
    return _resolve_dir(configured, environ, configured_from, must_exist)[0]


# --- verification -----------------------------------------------------------------------------------------------


def sha256_file(path: Path, chunk: int = 1024 * 1024) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What a models directory holds for one manifest file."""

    file: ModelFile
    path: Path
    present: bool
    actual_size: int | None = None
    actual_sha256: str | None = None
    """None where not hashed: absent, wrong size, or a quick (size-only) check."""

    @property
    def size_ok(self) -> bool | None:
        """False on a size mismatch; None when not checkable (absent, or no size in the manifest)."""
        if not self.present or self.file.size is None:
            return None
        return self.actual_size == self.file.size

    @property
    def sha256_ok(self) -> bool | None:
        """False on a hash mismatch; None when not hashed."""
        return None if self.actual_sha256 is None else self.actual_sha256 == self.file.sha256

    @property
    def ok(self) -> bool:
        """Present, and nothing checked was wrong."""
        return self.present and self.size_ok is not False and self.sha256_ok is not False

    @property
    def verified(self) -> bool:
        """Present with the right sha256 (and size where the manifest has one)."""
        return self.ok and self.sha256_ok is True

    @property
    def status(self) -> str:
        """One word or two: ``ok``, ``present`` (size-only check), ``missing``, ``wrong size``, ``wrong sha256``."""
        if not self.present:
            return "missing"
        if self.size_ok is False:
            return "wrong size"
        if self.sha256_ok is False:
            return "wrong sha256"
        return "ok" if self.sha256_ok else "present"

    @property
    def problem(self) -> str:
        """What is wrong, in words (empty when ok)."""
        if not self.present:
            return f"missing: no file {self.path}"
        if self.size_ok is False:
            return f"wrong size: {self.actual_size} bytes, the manifest says {self.file.size}"
        if self.sha256_ok is False:
            return f"wrong sha256: {self.actual_sha256}, the manifest says {self.file.sha256}"
        return ""


def check_file(model: ModelFile, model_dir: Path, *, check_hash: bool = True) -> FileCheck:
    """Check one file in a models directory: present, size, and (unless ``check_hash`` is False) sha256."""
    path = model.path_in(model_dir)
    if not path.is_file():
        return FileCheck(model, path, present=False)
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        return FileCheck(model, path, present=True, actual_size=size)
    digest = sha256_file(path) if check_hash else None
    return FileCheck(model, path, present=True, actual_size=size, actual_sha256=digest)


def verify_pack(manifest: Manifest, pack: str | None, model_dir: Path, *, check_hash: bool = True) -> list[FileCheck]:
    """Check a pack's detector and recogniser in ``model_dir`` (``pack`` None: the default pack)."""
    return [check_file(model, model_dir, check_hash=check_hash) for model in manifest.files_of(pack)]


@dataclass(frozen=True, slots=True)
class PackFiles:
    """A pack ready to run: its files from the manifest and their paths."""

    pack: ModelPack
    detector: ModelFile
    recogniser: ModelFile
    detector_path: Path
    recogniser_path: Path


def require_pack(manifest: Manifest, pack: str | None, model_dir: Path, *, check_hash: bool = True) -> PackFiles:
    """Verify a pack in ``model_dir`` and return its files; ModelError listing every problem and the fix otherwise."""
    chosen = manifest.pack(pack)
    checks = verify_pack(manifest, chosen.name, model_dir, check_hash=check_hash)
    bad = [c for c in checks if not c.ok]
    if bad:
        lines = "\n".join(f"  {c.file.name}: {c.problem}" for c in bad)
        raise ModelError(
            f"model pack {chosen.name!r} is not usable from {model_dir}:\n{lines}\n"
            f"Run `rollcall models fetch {chosen.name} --dir {model_dir}`, or point {MODEL_DIR_ENV} (or `models.dir`) "
            "at a folder that holds the right files."
        )
    detector, recogniser = checks[0], checks[1]
    return PackFiles(chosen, detector.file, recogniser.file, detector.path, recogniser.path)


# --- download ---------------------------------------------------------------------------------------------------


class _Response(Protocol):
    status: int

    def getheader(self, name: str, default: str | None = None) -> str | None: ...

    def read(self, amt: int, /) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[["urllib.request.Request", float], _Response]
"""Opens a request with a timeout; ``urllib.request.urlopen`` by default (tests may pass their own)."""


def _urlopen(request: urllib.request.Request, timeout: float) -> _Response:
    import urllib.request

    response: _Response = urllib.request.urlopen(request, timeout=timeout)
    return response


class _Interrupted(ModelError):
    """The connection broke after some bytes arrived; the ``.part`` file is kept for a resume."""


class _Offline(ModelError):
    """No connection could be made at all."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What ``fetch_pack`` did for one file."""

    file: ModelFile
    path: Path
    action: FetchAction


def mirror_url(url: str, base_url: str | None) -> str:
    """``url`` with its scheme and host replaced by ``base_url``'s (whose path, if any, is put in front of url's)."""
    if not base_url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    base = urlsplit(base_url.strip())
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ModelError(f"mirror base URL {base_url!r} must look like https://host[:port][/path]")
    original = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + original.path, original.query, ""))


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if match is None:
        return None
    return int(match[1]), None if match[3] == "*" else int(match[3])


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_part(part: Path, mode: Literal["ab", "wb"]) -> BinaryIO:
    try:
        return part.open(mode)
    except OSError as exc:
        raise ModelError(f"cannot write {part}: {exc}; pass --dir with a writable folder") from None


@dataclass
class _Download:
    name: str
    url: str
    part: Path
    expected_size: int | None
    resumed: bool = False


def _download(
    job: _Download, *, progress: ProgressCallback | None, opener: Opener, timeout: float, allow_resume: bool
) -> str:
    """Download ``job.url`` into ``job.part`` (resuming what is there); returns the sha256 of the whole file."""
    import http.client
    import urllib.error
    import urllib.request

    offset = job.part.stat().st_size if allow_resume and job.part.is_file() else 0
    if job.expected_size is not None and offset > job.expected_size:
        offset = 0
    if offset and offset == job.expected_size:
        job.resumed = True  # complete from an earlier run: only the check remains
        return sha256_file(job.part)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(job.url, headers=headers)
    try:
        response = opener(request, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # What we hold is at least as long as the file: it is stale. Start again from nothing.
            job.part.unlink(missing_ok=True)
            return _download(job, progress=progress, opener=opener, timeout=timeout, allow_resume=False)
        raise ModelError(
            f"cannot download {job.name}: {job.url} answered HTTP {exc.code} {exc.reason}; check the URL, "
            f"or the mirror set by --base-url / {BASE_URL_ENV}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Offline(f"cannot reach {job.url} ({reason})") from None
    try:
        status = response.status
        length_header = response.getheader("Content-Length")
        length = int(length_header) if length_header and length_header.strip().isdigit() else None
        if status == 206 and offset:
            content_range = _content_range(response.getheader("Content-Range"))
            if content_range is None or content_range[0] != offset:
                log.warning(
                    "%s: the server sent a range that does not start at %d; downloading it whole", job.name, offset
                )
                response.close()
                job.part.unlink(missing_ok=True)
                return _download(job, progress=progress, opener=opener, timeout=timeout, allow_resume=False)
            total = (
                content_range[1] if content_range[1] is not None else (offset + length if length is not None else None)
            )
            mode: Literal["ab", "wb"] = "ab"
            job.resumed = True
        elif 200 <= status < 300:
            if offset:
                log.info("%s: the server ignored the resume request; downloading it whole", job.name)
            offset, total, mode = 0, length, "wb"
        else:
            raise ModelError(f"cannot download {job.name}: {job.url} answered HTTP {status}")
        if total is not None and job.expected_size is not None and total != job.expected_size:
            job.part.unlink(missing_ok=True)
            raise ModelError(
                f"cannot download {job.name}: {job.url} offers {total} bytes but the manifest expects "
                f"{job.expected_size}; the server or mirror holds a different file"
            )
        digest = hashlib.sha256()
        if mode == "ab":
            with job.part.open("rb") as existing:
                while block := existing.read(CHUNK_BYTES):
                    digest.update(block)
        done = offset
        with _open_part(job.part, mode) as out:
            if progress is not None:
                progress(job.name, done, total)
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(f"the connection broke ({exc.__class__.__name__}: {exc})") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise ModelError(f"cannot write {job.part}: {exc}") from None
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(job.name, done, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done < total:
            raise _Interrupted(f"the connection closed after {done} of {total} bytes")
        if total is None and progress is not None:
            progress(job.name, done, done)
        return digest.hexdigest()
    finally:
        response.close()


def _download_with_retries(
    job: _Download,
    *,
    progress: ProgressCallback | None,
    opener: Opener,
    timeout: float,
    retries: int,
    retry_delay_s: float,
) -> str:
    for attempt in range(retries + 1):
        try:
            return _download(job, progress=progress, opener=opener, timeout=timeout, allow_resume=True)
        except _Interrupted as exc:
            kept = job.part.stat().st_size if job.part.is_file() else 0
            if attempt >= retries:
                raise _Interrupted(
                    f"the download of {job.name} from {job.url} was interrupted: {exc}. The {kept} bytes received are "
                    f"kept in {job.part}: run the command again to resume"
                ) from None
            log.warning(
                "%s: %s; resuming from byte %d (attempt %d of %d)", job.name, exc, kept, attempt + 2, retries + 1
            )
            time.sleep(retry_delay_s * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _offline_error(exc: ModelError, pack: ModelPack, model_dir: Path) -> ModelError:
    return ModelError(
        f"{exc}. This machine seems to be offline (or a proxy or firewall blocks the download). Copy the files of "
        f"pack {pack.name!r} ({pack.detector}, {pack.recogniser}) from a machine that has them into a folder here and "
        f"set {MODEL_DIR_ENV}=/that/folder (or `models.dir` in the edge config); or download from a reachable mirror "
        f"with --base-url URL or {BASE_URL_ENV}=URL. Partial downloads stay in {model_dir} and resume."
    )


def _verify_part(job: _Download, model: ModelFile, digest: str, size: int) -> None:
    if model.size is not None and size != model.size:
        job.part.unlink(missing_ok=True)
        raise ModelError(
            f"{model.name}: wrong size: got {size} bytes, expected {model.size} ({job.url}); the download was deleted"
        )
    if digest != model.sha256:
        job.part.unlink(missing_ok=True)
        raise ModelError(
            f"{model.name}: sha256 mismatch: expected {model.sha256}, got {digest} ({job.url}); the download was "
            f"deleted. The server or mirror serves other bytes than the manifest pins: check --base-url / "
            f"{BASE_URL_ENV}, or the manifest"
        )


def _install(part: Path, target: Path) -> None:
    os.replace(part, target)
    _fsync_dir(target.parent)


def _fetch_direct(model: ModelFile, model_dir: Path, url: str, *, download: Callable[[_Download], str]) -> FetchResult:
    target = model.path_in(model_dir)
    job = _Download(model.name, url, model_dir / f"{model.name}.part", model.size)
    digest = download(job)
    try:
        _verify_part(job, model, digest, job.part.stat().st_size)
    except ModelError:
        if not job.resumed:
            raise
        # The kept .part may have come from another file or version: one clean download before giving up.
        log.warning("%s: the resumed download did not verify; downloading it whole", model.name)
        job = _Download(model.name, url, job.part, model.size)
        digest = download(job)
        _verify_part(job, model, digest, job.part.stat().st_size)
    _install(job.part, target)
    return FetchResult(model, target, "downloaded")


def _find_member(archive: zipfile.ZipFile, member: str, archive_name: str) -> str:
    names = archive.namelist()
    if member in names:
        return member
    base = member.rsplit("/", 1)[-1]
    matches = [n for n in names if n.rsplit("/", 1)[-1] == base and not n.endswith("/")]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(n for n in names if not n.endswith("/")) or "nothing"
    raise ModelError(f"{archive_name} holds no single member {member!r} (it holds: {shown})")


def _extract(archive_path: Path, model: ModelFile, model_dir: Path, url: str) -> FetchResult:
    import zipfile

    assert model.archive is not None and model.member is not None
    target = model.path_in(model_dir)
    part = model_dir / f"{model.name}.part"
    try:
        with zipfile.ZipFile(archive_path) as archive:
            member = _find_member(archive, model.member, model.archive)
            digest = hashlib.sha256()
            with archive.open(member) as source, _open_part(part, "wb") as out:
                while block := source.read(CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                out.flush()
                os.fsync(out.fileno())
    except (zipfile.BadZipFile, EOFError) as exc:
        part.unlink(missing_ok=True)
        archive_path.unlink(missing_ok=True)
        raise ModelError(f"{archive_path} is not a readable zip archive ({exc}); it was deleted: run again") from None
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ModelError(f"cannot extract {model.member} from {archive_path} into {part}: {exc}") from None
    try:
        _verify_part(_Download(model.name, url, part, model.size), model, digest.hexdigest(), part.stat().st_size)
    except ModelError:
        archive_path.unlink(missing_ok=True)  # it cannot give the pinned bytes; a later run fetches it afresh
        raise
    _install(part, target)
    return FetchResult(model, target, "extracted")


def _fetch_archive(
    archive_name: str,
    members: list[ModelFile],
    model_dir: Path,
    url: str,
    *,
    download: Callable[[_Download], str],
    keep: bool,
) -> list[FetchResult]:
    archive_path = model_dir / archive_name
    for attempt in (1, 2):
        resumed = False
        if not archive_path.is_file():
            job = _Download(archive_name, url, model_dir / f"{archive_name}.part", None)
            download(job)
            resumed = job.resumed
            _install(job.part, archive_path)
        try:
            results = [_extract(archive_path, model, model_dir, url) for model in members]
        except ModelError:
            if attempt == 2 or not resumed or archive_path.exists():
                raise
            # A bad archive is deleted by _extract; a resumed one may have mixed versions: one clean download.
            log.warning("%s: the resumed archive did not verify; downloading it whole", archive_name)
            continue
        if not keep:
            archive_path.unlink(missing_ok=True)
        return results
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_pack(
    manifest: Manifest,
    pack: str | None,
    model_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    base_url_override: str | None = None,
    opener: Opener = _urlopen,
    environ: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 2,
    retry_delay_s: float = 1.0,
    keep_archives: bool = False,
) -> list[FetchResult]:
    """Download a pack's files into ``model_dir`` and verify their sha256; files already verified are skipped.

    Downloads go to ``NAME.part`` and resume with an HTTP Range request (a server that answers 200 instead is
    read from the start); a verified file is renamed into place atomically. Files inside a zip archive are
    extracted from it, and the archive is removed afterwards unless ``keep_archives``. ``base_url_override`` (else
    ``$ROLLCALL_MODEL_BASE_URL``) replaces the scheme and host of every URL: a mirror. Raises ModelError: offline
    (telling how to set ROLLCALL_MODEL_DIR instead), interrupted (the .part is kept), HTTP errors, sha256 mismatch.
    """
    environ = os.environ if environ is None else environ
    chosen = manifest.pack(pack)
    base_url = base_url_override if base_url_override is not None else environ.get(BASE_URL_ENV, "").strip() or None
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the models directory {model_dir}: {exc}; pass --dir with a writable folder"
        ) from None

    def download(job: _Download) -> str:
        return _download_with_retries(
            job, progress=progress, opener=opener, timeout=timeout, retries=retries, retry_delay_s=retry_delay_s
        )

    results: dict[str, FetchResult] = {}
    by_archive: dict[str, list[ModelFile]] = {}
    try:
        for model in manifest.files_of(chosen.name):
            if check_file(model, model_dir).verified:
                results[model.name] = FetchResult(model, model.path_in(model_dir), "present")
            elif model.archive is None:
                results[model.name] = _fetch_direct(
                    model, model_dir, mirror_url(model.url, base_url), download=download
                )
            else:
                by_archive.setdefault(model.archive, []).append(model)
        for archive_name, members in by_archive.items():
            url = mirror_url(members[0].url, base_url)
            for result in _fetch_archive(archive_name, members, model_dir, url, download=download, keep=keep_archives):
                results[result.file.name] = result
    except _Offline as exc:
        raise _offline_error(exc, chosen, model_dir) from None
    return [results[model.name] for model in manifest.files_of(chosen.name)]


# --- the command line -------------------------------------------------------------------------------------------


def human_bytes(count: float | None) -> str:
    """``2524817`` → ``2.5 MB`` (decimal units, as download pages write them)."""
    if count is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class ProgressBar:
    """A text progress bar for downloads: name, bar, percent, bytes and rate; redrawn in place on a terminal."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        width: int = 24,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.interval_s = interval_s
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self._name: str | None = None
        self._start = 0.0
        self._start_bytes = 0
        self._last_draw = float("-inf")
        self._last_quarter = -1
        self._shown = 0

    def render(self, name: str, done: int, total: int | None, rate: float) -> str:
        """The bar's text for one state."""
        speed = f"{human_bytes(rate)}/s"
        if not total:
            return f"{name}  {human_bytes(done)}  {speed}"
        fraction = min(1.0, done / total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{name}  [{bar}] {fraction * 100:3.0f}%  {human_bytes(done)} / {human_bytes(total)}  {speed}"

    def __call__(self, name: str, done: int, total: int | None) -> None:
        """The fetch progress callback."""
        now = self.clock()
        if name != self._name:
            self._name, self._start, self._start_bytes = name, now, done
            self._last_draw, self._last_quarter, self._shown = float("-inf"), -1, 0
        finished = total is not None and done >= total
        elapsed = now - self._start
        rate = (done - self._start_bytes) / elapsed if elapsed > 0 else 0.0
        if self.tty:
            if not finished and now - self._last_draw < self.interval_s:
                return
            line = self.render(name, done, total, rate)
            self.stream.write("\r" + line.ljust(self._shown) + ("\n" if finished else ""))
            self._shown = len(line)
        else:
            quarter = int(4 * done / total) if total else -1
            if not finished and quarter <= self._last_quarter:
                return
            self._last_quarter = quarter
            self.stream.write(self.render(name, done, total, rate) + "\n")
        self._last_draw = now
        self.stream.flush()


def _load_edge_models(config: Path | None) -> tuple[Path | None, str | None]:
    """``models.dir`` and ``models.pack`` of an edge config file (ModelError listing the config's problems)."""
    if config is None:
        return None, None
    from edge.door.config import EdgeConfig
    from edge.protocol.config import ConfigError, load_config

    try:
        loaded = load_config(EdgeConfig, config, "edge")
    except ConfigError as exc:
        raise ModelError(
            f"{config}: the edge config has problems:\n" + "\n".join(f"  {p}" for p in exc.problems)
        ) from None
    return loaded.models.dir, loaded.models.pack


def _model_dir(args: argparse.Namespace, *, must_exist: bool) -> tuple[Path, str, str | None]:
    """Models directory, where it came from, and the configured pack (from --dir, --config, $ROLLCALL_MODEL_DIR)."""
    config_dir, config_pack = _load_edge_models(args.config)
    configured, origin = (args.dir, "--dir") if args.dir is not None else (config_dir, f"models.dir in {args.config}")
    model_dir, origin = _resolve_dir(configured, None, origin, must_exist)
    return model_dir, origin, config_pack


def _error(exc: ModelError) -> None:
    print(f"error: {exc}", file=sys.stderr)


def _file_line(role: str, model: ModelFile, status: str) -> str:
    size = human_bytes(model.size) if model.size is not None else "size ?"
    return f"  {role:<10}  {model.name:<36} {size:>9}  {status}"


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    model_dir: Path | None = None
    try:
        model_dir, origin, _ = _model_dir(args, must_exist=True)
        print(f"models directory: {model_dir} (from {origin})")
    except ModelError as exc:
        print(f"models directory: none usable ({exc}); presence is not checked")
    checks: dict[str, FileCheck] = {}
    for pack in manifest.packs.values():
        default = " (default)" if pack.name == manifest.default_pack else ""
        print(f"\n{pack.name}{default}: {pack.description}")
        print(f"  licence: {pack.licence}")
        for role, model in zip(("detector", "recogniser"), manifest.files_of(pack.name), strict=True):
            status = "-"
            if model_dir is not None:
                if model.name not in checks:
                    checks[model.name] = check_file(model, model_dir, check_hash=not args.quick)
                status = checks[model.name].status
            print(_file_line(role, model, status))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        model_dir, origin, config_pack = _model_dir(args, must_exist=True)
        names = list(manifest.packs) if args.all else [manifest.pack(args.pack or config_pack).name]
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    print(f"models directory: {model_dir} (from {origin})")
    checks: dict[str, FileCheck] = {}
    failed: list[str] = []
    for name in names:
        bad = []
        print(f"\n{name}:")
        for role, model in zip(("detector", "recogniser"), manifest.files_of(name), strict=True):
            if model.name not in checks:
                checks[model.name] = check_file(model, model_dir)
            check = checks[model.name]
            print(_file_line(role, model, check.status if check.ok else check.problem))
            if not check.ok:
                bad.append(model.name)
        if bad:
            failed.append(name)
            print(f"  -> not usable: {', '.join(bad)}")
    if failed:
        target = failed[0] if len(failed) == 1 else "PACK"
        print(
            f"\n{len(failed)} of {len(names)} pack{'s' if len(names) != 1 else ''} not usable from {model_dir}: "
            f"{', '.join(failed)}. Fix: `rollcall models fetch {target} --dir {model_dir}`, or point "
            f"{MODEL_DIR_ENV} (or `models.dir`) at a folder holding the right files.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"\nall {len(names)} pack{'s' if len(names) != 1 else ''} verified (sha256)")
    return EXIT_OK


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        model_dir, origin, _ = _model_dir(args, must_exist=False)
        pack = manifest.pack(args.pack)
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    print(f"fetching pack {pack.name} into {model_dir} (from {origin})", file=sys.stderr)
    print(f"licence: {pack.licence}", file=sys.stderr)
    progress = None if args.no_progress else ProgressBar(sys.stderr)
    try:
        results = fetch_pack(manifest, pack.name, model_dir, progress=progress, base_url_override=args.base_url)
    except ModelError as exc:
        _error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"\ninterrupted: partial downloads stay in {model_dir}; run the command again to resume", file=sys.stderr)
        return 130
    for result in results:
        print(f"{result.action:<10}  {result.file.name}  sha256 ok  {result.path}")
    print(f"pack {pack.name} is ready in {model_dir}")
    if origin != MODEL_DIR_ENV and os.environ.get(MODEL_DIR_ENV) != str(model_dir):
        print(f"to use it: set {MODEL_DIR_ENV}={model_dir} (or `models.dir` in the edge config)")
    return EXIT_OK


def add_models_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``models list | verify [PACK] | fetch PACK`` on the ``rollcall`` command's subparsers."""
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", type=Path, help=f"models directory (default: models.dir from --config, else ${MODEL_DIR_ENV})"
    )
    common.add_argument("--config", type=Path, help="an edge config file whose models.dir and models.pack to use")
    common.add_argument(
        "--manifest", type=Path, help="a manifest to use instead of the repository's models/manifest.toml"
    )

    models = subparsers.add_parser(
        "models",
        help="list, verify and download model packs (docs/models.md)",
        description="Model packs (a face detector plus a recogniser): list them, verify a models directory "
        "against the manifest's sha256, or download a pack. See docs/models.md.",
    )
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list", parents=[common], help="packs with their files, sizes, licences and what the models directory holds"
    )
    listing.add_argument("--quick", action="store_true", help="check sizes only, not sha256")
    listing.set_defaults(handler=_cmd_list)

    verify = commands.add_parser(
        "verify", parents=[common], help="check a pack's files (size and sha256); exit 2 when any is missing or wrong"
    )
    verify.add_argument("pack", nargs="?", help="pack to verify (default: models.pack from --config, else the default)")
    verify.add_argument("--all", action="store_true", help="verify every pack in the manifest")
    verify.set_defaults(handler=_cmd_verify)

    fetch = commands.add_parser(
        "fetch", parents=[common], help="download a pack's files over HTTPS, resuming, and verify their sha256"
    )
    fetch.add_argument("pack", help="pack to download (see `rollcall models list`)")
    fetch.add_argument(
        "--base-url", help=f"a mirror replacing the download URLs' scheme and host (default: ${BASE_URL_ENV})"
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    fetch.set_defaults(handler=_cmd_fetch)
    return models
