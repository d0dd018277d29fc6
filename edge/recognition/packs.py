"""Model packs: the manifest (files, packs, licences), the models directory, and verifying a pack's files in it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

MODEL_DIR_ENV = "ROLLCALL_MODEL_DIR"
"""Environment variable naming the folder that holds the model files."""
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.toml"
"""The manifest in a source checkout (and an editable install)."""
INSTALLED_MANIFEST = Path(sys.prefix) / "share" / "rollcall" / "models" / "manifest.toml"
"""Where a wheel installs the same file (pyproject's data-files)."""


def default_manifest_path() -> Path:
    """The checkout's manifest when there is one, else the installed copy."""
    return DEFAULT_MANIFEST if DEFAULT_MANIFEST.is_file() else INSTALLED_MANIFEST


SCHEMA_VERSION = 1

Kind = Literal["detector", "recogniser"]
Family = Literal["scrfd", "yunet", "arcface"]
Colour = Literal["rgb", "bgr"]
Runtime = Literal["onnxruntime", "opencv"]

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

    def absent(
        self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, required: bool, hint: str = ""
    ) -> bool:
        """Whether ``key`` is missing from ``data``; a problem only where it is required."""
        if key in data:
            return False
        if required:
            self.fail((*path, key), f"required key is missing{hint}")
        return True

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
        if self.absent(data, path, key, required=required):
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
        if self.absent(data, path, key, required=required):
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail((*path, key), f"must be a positive whole number (got {value!r})")
            return None
        return value

    def number(self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, positive: bool = False) -> float:
        if self.absent(data, path, key, required=True):
            return 1.0
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or (positive and value <= 0):
            self.fail((*path, key), f"must be a {'positive ' if positive else ''}number (got {value!r})")
            return 1.0
        return float(value)

    def flag(self, data: Mapping[str, Any], path: tuple[str, ...], key: str, *, required: bool = True) -> bool:
        if self.absent(data, path, key, required=required, hint=" (true or false)"):
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


def resolve_model_dir_with_origin(
    configured: Path | None, environ: Mapping[str, str] | None, configured_from: str, must_exist: bool
) -> tuple[Path, str]:
    """``resolve_model_dir``, and where the folder came from (``configured_from`` or ``$ROLLCALL_MODEL_DIR``)."""
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
    return resolve_model_dir_with_origin(configured, environ, configured_from, must_exist)[0]


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
