"""Gallery distribution: the rollcall-gallery-1 codec, chunked publication and assembly on the device."""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from edge.protocol.wire import MAX_BINARY_PAYLOAD_BYTES, MAX_GALLERY_CHUNKS, GalleryChunk, GalleryManifest, check_id
from edge.recognition.gallery import Gallery

FORMAT = "rollcall-gallery-1+zlib"
"""The value of ``GalleryManifest.format`` for galleries in this encoding."""

MAGIC = b"RCG1"
"""First four bytes of a decompressed gallery."""

MAX_GALLERY_BYTES = 256 * 1024 * 1024
"""Cap on a gallery's compressed and on its decompressed size; larger ones are refused before they use memory."""

CHUNK_JSON_ALLOWANCE = 512
"""Bytes a chunk message spends on JSON around its base64 data (about 130 in practice; the rest is headroom)."""

MAX_CHUNK_BYTES = (MAX_BINARY_PAYLOAD_BYTES - CHUNK_JSON_ALLOWANCE) // 4 * 3
"""Largest raw chunk whose base64 still fits a binary payload: 1,572,480 bytes."""

DEFAULT_CHUNK_BYTES = 256 * 1024

_PERSON_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the shape of wire.EntityId: events name people so
_MAX_TEXT = 256  # wire.ShortText: model ids and names travel in manifests, presence and health
_PREFIX = struct.Struct("<4sI")


class GalleryError(Exception):
    """A gallery (or its store or key file) that cannot be used; the message says why, for health and logs."""


@dataclass(frozen=True, slots=True)
class _Person:
    id: str
    name: str | None
    templates: int


@dataclass(frozen=True, slots=True)
class _Header:
    version: int
    model_id: str
    embedding_size: int
    people: tuple[_Person, ...]

    @property
    def templates(self) -> int:
        return sum(p.templates for p in self.people)


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and is refused


def _check_header(obj: object) -> _Header:
    """Validate a decoded JSON header; raise :class:`GalleryError` naming the first problem."""
    if not isinstance(obj, dict):
        raise GalleryError(f"gallery header must be a JSON object, got {type(obj).__name__}")
    keys = {"version", "model_id", "embedding_size", "people"}
    if set(obj) != keys:
        missing, unknown = sorted(keys - set(obj)), sorted(set(obj) - keys)
        raise GalleryError(f"gallery header fields wrong (missing {missing}, unknown {unknown})")
    version, model_id, size, people = obj["version"], obj["model_id"], obj["embedding_size"], obj["people"]
    if not _is_int(version) or version < 1:
        raise GalleryError(f"gallery version must be an integer >= 1, got {version!r}")
    if not isinstance(model_id, str) or not 1 <= len(model_id) <= _MAX_TEXT:
        raise GalleryError(f"gallery model_id must be a string of 1-{_MAX_TEXT} characters, got {model_id!r:.80}")
    if not _is_int(size) or not 16 <= size <= 4096:
        raise GalleryError(f"gallery embedding_size must be an integer in 16..4096, got {size!r}")
    if not isinstance(people, list):
        raise GalleryError("gallery people must be a list")
    parsed: list[_Person] = []
    seen: set[str] = set()
    for i, entry in enumerate(people):
        if not isinstance(entry, dict) or set(entry) != {"id", "name", "templates"}:
            raise GalleryError(f"gallery people[{i}] must be an object with exactly id, name, templates")
        pid, name, count = entry["id"], entry["name"], entry["templates"]
        if not isinstance(pid, str) or not _PERSON_ID_RE.match(pid):
            raise GalleryError(f"gallery people[{i}].id {pid!r:.80} is not a valid person id")
        if pid in seen:
            raise GalleryError(f"gallery people[{i}].id {pid!r} appears twice")
        if name is not None and (not isinstance(name, str) or len(name) > _MAX_TEXT):
            raise GalleryError(f"gallery people[{i}].name must be null or a string of at most {_MAX_TEXT} characters")
        if not _is_int(count) or count < 1:
            raise GalleryError(f"gallery people[{i}].templates must be an integer >= 1, got {count!r}")
        seen.add(pid)
        parsed.append(_Person(pid, name, count))
    return _Header(version, model_id, size, tuple(parsed))


def _embedding_size(gallery: Gallery) -> int:
    shape = gallery.embeddings.shape
    if len(shape) != 2:
        raise GalleryError(f"gallery embeddings must be a 2-D array (templates x size), got shape {shape}")
    return int(shape[1])


def encode_gallery(gallery: Gallery) -> bytes:
    """Encode a gallery as rollcall-gallery-1, zlib-compressed.

    People go in id order, each person's templates in their order in the gallery, so the same gallery always gives
    the same bytes (and checksum). An empty gallery keeps its size through embeddings of shape ``(0, size)``.
    """
    size = _embedding_size(gallery)
    labels = list(gallery.labels)
    order = sorted(range(len(labels)), key=lambda i: labels[i])  # stable: templates keep their order per person
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    people = [{"id": pid, "name": gallery.names.get(pid), "templates": counts[pid]} for pid in sorted(counts)]
    header_obj = {"version": gallery.version, "model_id": gallery.model_id, "embedding_size": size, "people": people}
    _check_header(header_obj)  # refuse on the hub what every device would refuse
    with np.errstate(over="ignore"):  # values beyond float16's range become infinity, refused just below
        matrix = np.asarray(gallery.embeddings)[order].astype("<f2")
    if not np.isfinite(matrix).all():
        raise GalleryError("gallery templates contain NaN or infinity (or values beyond float16's range)")
    header = json.dumps(header_obj, ensure_ascii=False, separators=(",", ":")).encode()
    raw = _PREFIX.pack(MAGIC, len(header)) + header + matrix.tobytes()
    if len(raw) > MAX_GALLERY_BYTES:
        raise GalleryError(f"gallery is {len(raw)} bytes, over the {MAX_GALLERY_BYTES}-byte limit")
    return zlib.compress(raw, 9)


def _decompress(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, MAX_GALLERY_BYTES + 1)
    except zlib.error as exc:
        raise GalleryError(f"gallery bytes are not zlib data ({exc})") from None
    if len(raw) > MAX_GALLERY_BYTES or inflater.unconsumed_tail:
        raise GalleryError(f"gallery decompresses to more than the {MAX_GALLERY_BYTES}-byte limit")
    if not inflater.eof:
        raise GalleryError("gallery bytes are truncated (zlib stream does not end)")
    if inflater.unused_data:
        raise GalleryError(f"gallery has {len(inflater.unused_data)} stray bytes after its zlib stream")
    return raw


def _parse(data: bytes) -> tuple[_Header, bytes]:
    raw = _decompress(data)
    if len(raw) < _PREFIX.size:
        raise GalleryError(f"gallery is {len(raw)} bytes, too short for its {_PREFIX.size}-byte prefix")
    magic, header_len = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise GalleryError(f"not a rollcall gallery: magic {magic!r}, expected {MAGIC!r}")
    body = raw[_PREFIX.size :]
    if header_len > len(body):
        raise GalleryError(f"gallery header length {header_len} is beyond the {len(body)} bytes that follow")
    try:
        obj: Any = json.loads(body[:header_len].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise GalleryError(f"gallery header is not UTF-8 JSON ({exc})") from None
    except RecursionError:  # a few kilobytes of brackets exhaust the JSON parser's stack
        raise GalleryError("gallery header is JSON nested too deeply") from None
    header = _check_header(obj)
    matrix = body[header_len:]
    expected = header.templates * header.embedding_size * 2
    if len(matrix) != expected:
        raise GalleryError(
            f"gallery matrix is {len(matrix)} bytes; {header.templates} templates x {header.embedding_size} "
            f"float16 need {expected}"
        )
    return header, matrix


def decode_gallery(data: bytes) -> Gallery:
    """Decode (and fully validate) rollcall-gallery-1 bytes; raise :class:`GalleryError` with the reason.

    Templates come back as float32 and are normalised to unit length again after float16 rounding.
    """
    return _build(*_parse(data))


def _build(header: _Header, matrix_bytes: bytes) -> Gallery:
    matrix = np.frombuffer(matrix_bytes, dtype="<f2").astype(np.float32).reshape(-1, header.embedding_size)
    if not np.isfinite(matrix).all():
        raise GalleryError("gallery templates contain NaN or infinity")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    labels = [p.id for p in header.people for _ in range(p.templates)]
    names = {p.id: p.name for p in header.people if p.name is not None}
    return Gallery(labels, matrix, names=names, version=header.version, model_id=header.model_id)


def check_compatible(model_id: str, embedding_size: int, expected_model_id: str, expected_size: int) -> None:
    """Raise :class:`GalleryError` naming both sides when a gallery was made for another model or size."""
    problems = []
    if model_id != expected_model_id:
        problems.append(f"model {model_id!r:.60} but this device runs {expected_model_id!r:.60}")
    if embedding_size != expected_size:
        problems.append(f"embedding size {embedding_size} but this device's model makes {expected_size}")
    if problems:
        raise GalleryError("incompatible gallery: " + "; ".join(problems))


def build_publication(
    gallery: Gallery, device: str, created_at: datetime, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[GalleryManifest, list[GalleryChunk]]:
    """Encode ``gallery`` for ``device``: the manifest and the chunks to publish retained (chunks first).

    ``chunk_bytes`` (raw bytes per chunk, at most :data:`MAX_CHUNK_BYTES`) keeps every chunk message, base64 in
    JSON, within ``MAX_BINARY_PAYLOAD_BYTES``. The manifest's sha256 covers all the compressed bytes.
    """
    check_id(device, "device id")
    if not 1 <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{MAX_CHUNK_BYTES} (base64 of a chunk must fit a binary payload)")
    data = encode_gallery(gallery)
    count = math.ceil(len(data) / chunk_bytes)
    if count > MAX_GALLERY_CHUNKS:
        raise GalleryError(f"gallery needs {count} chunks, over {MAX_GALLERY_CHUNKS}; use larger chunks")
    manifest = GalleryManifest(
        device=device,
        version=gallery.version,
        created_at=created_at,
        model_id=gallery.model_id,
        embedding_size=_embedding_size(gallery),
        people=len(gallery),
        format=FORMAT,
        size_bytes=len(data),
        chunks=count,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    chunks = [
        GalleryChunk(
            device=device,
            version=gallery.version,
            index=i,
            total=count,
            data=data[i * chunk_bytes : (i + 1) * chunk_bytes],
        )
        for i in range(count)
    ]
    return manifest, chunks


class GalleryAssembler:
    """Joins a device's retained gallery manifest and chunks, in any order, into a verified, compatible gallery.

    :meth:`feed` takes every :class:`GalleryManifest` and :class:`GalleryChunk` the device receives. It returns the
    new :class:`Gallery` when the manifest's chunks are all present, the joined bytes match ``size_bytes`` and
    ``sha256``, they decode, the header agrees with the manifest, and the model and embedding size are the ones
    the device expects. A gallery that fails any check raises :class:`GalleryError` (the reason is also kept in
    :attr:`error` for health) and is dropped; the caller keeps its current gallery and the assembler waits for the
    next version. Chunks of versions already installed or superseded are ignored; chunks that come before their
    manifest are kept until it arrives. A manifest older than the installed version is refused: versions only grow.
    Not thread-safe: feed it from one thread (the MQTT callback).
    """

    def __init__(self, expected_model_id: str, expected_size: int, installed_version: int = 0) -> None:
        """Expect galleries for this model and size; ``installed_version`` is the one loaded already (0: none)."""
        self.expected_model_id = expected_model_id
        self.expected_size = expected_size
        self.installed_version = installed_version
        self.error: str | None = None
        """Why the latest gallery was refused; None after a gallery was accepted (or before any was refused)."""
        self.last_data: bytes | None = None
        """The compressed bytes of the gallery :meth:`feed` returned last, for the device's gallery store."""
        self._manifest: GalleryManifest | None = None
        self._chunks: dict[int, dict[int, bytes]] = {}  # version -> index -> data
        self._totals: dict[int, int] = {}  # version -> total the chunks claim
        self._bytes: dict[int, int] = {}  # version -> bytes held

    @property
    def pending(self) -> tuple[int, int, int] | None:
        """(version, chunks present, chunks needed) of the manifest being assembled; None when none is."""
        if self._manifest is None:
            return None
        have = self._chunks.get(self._manifest.version, {})
        return self._manifest.version, len(have), self._manifest.chunks

    @property
    def buffered_versions(self) -> list[int]:
        """Versions whose chunks are held in memory: at most the pending manifest's and the newest seen."""
        return sorted(self._chunks)

    def feed(self, payload: GalleryManifest | GalleryChunk) -> Gallery | None:
        """Take one manifest or chunk; return the new gallery once it is complete and verified, else None."""
        if isinstance(payload, GalleryManifest):
            self._add_manifest(payload)
        else:
            self._add_chunk(payload)
        return self._try_complete()

    def _fail(self, reason: str, version: int) -> GalleryError:
        self.error = reason
        self._drop(version)
        if self._manifest is not None and self._manifest.version == version:
            self._manifest = None
        return GalleryError(reason)

    def _drop(self, version: int) -> None:
        self._chunks.pop(version, None)
        self._totals.pop(version, None)
        self._bytes.pop(version, None)

    def _forget_older_than(self, version: int) -> None:
        for old in [v for v in self._chunks if v < version]:
            self._drop(old)

    def _add_manifest(self, manifest: GalleryManifest) -> None:
        version = manifest.version
        if version == self.installed_version:
            return  # the retained manifest of the gallery we already have
        if version < self.installed_version:
            raise self._fail(
                f"gallery version {version} is older than the installed version {self.installed_version}; "
                "keeping the installed one (the hub must publish a higher version)",
                version,
            )
        if self._manifest is not None and version < self._manifest.version:
            return  # superseded already
        if manifest.format != FORMAT:
            raise self._fail(f"gallery version {version} has format {manifest.format!r}; expected {FORMAT!r}", version)
        try:
            check_compatible(manifest.model_id, manifest.embedding_size, self.expected_model_id, self.expected_size)
        except GalleryError as exc:
            raise self._fail(f"gallery version {version}: {exc}", version) from None
        if manifest.size_bytes > MAX_GALLERY_BYTES:
            raise self._fail(
                f"gallery version {version} is {manifest.size_bytes} bytes, over the {MAX_GALLERY_BYTES}-byte limit",
                version,
            )
        if manifest.chunks == 0:
            raise self._fail(f"gallery version {version} lists no chunks", version)
        self._manifest = manifest
        self._forget_older_than(version)
        claimed = self._totals.get(version)
        if claimed is not None and claimed != manifest.chunks:
            raise self._fail(
                f"gallery version {version}: manifest says {manifest.chunks} chunks, chunks say {claimed}", version
            )

    def _add_chunk(self, chunk: GalleryChunk) -> None:
        version = chunk.version
        floor = self._manifest.version if self._manifest is not None else self.installed_version + 1
        if version <= self.installed_version or version < floor:
            return  # a leftover retained chunk of an older version
        claimed = self._totals.setdefault(version, chunk.total)
        if claimed != chunk.total:
            raise self._fail(
                f"gallery version {version}: chunk {chunk.index} says {chunk.total} chunks, others say {claimed}",
                version,
            )
        if self._manifest is not None and self._manifest.version == version and chunk.total != self._manifest.chunks:
            raise self._fail(
                f"gallery version {version}: chunk {chunk.index} says {chunk.total} chunks, "
                f"the manifest {self._manifest.chunks}",
                version,
            )
        pieces = self._chunks.setdefault(version, {})
        earlier = pieces.get(chunk.index, b"")
        pieces[chunk.index] = chunk.data  # a duplicate replaces its earlier copy
        self._bytes[version] = self._bytes.get(version, 0) + len(chunk.data) - len(earlier)
        if self._bytes[version] > MAX_GALLERY_BYTES:
            raise self._fail(f"gallery version {version}: chunks exceed {MAX_GALLERY_BYTES} bytes", version)
        # Keep the manifest's version and the newest one seen (its manifest may follow); others are leftovers.
        keep = {max(self._chunks)} | ({self._manifest.version} if self._manifest is not None else set())
        for other in [v for v in self._chunks if v not in keep]:
            self._drop(other)

    def _try_complete(self) -> Gallery | None:
        manifest = self._manifest
        if manifest is None:
            return None
        version = manifest.version
        pieces = self._chunks.get(version, {})
        if len(pieces) < manifest.chunks:
            return None
        data = b"".join(pieces[i] for i in range(manifest.chunks))
        if len(data) != manifest.size_bytes:
            raise self._fail(
                f"gallery version {version}: {len(data)} bytes arrived, the manifest says {manifest.size_bytes}",
                version,
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256:
            raise self._fail(
                f"gallery version {version}: checksum mismatch (sha256 {digest[:16]}…, "
                f"manifest {manifest.sha256[:16]}…)",
                version,
            )
        try:
            header, matrix_bytes = _parse(data)
            check_compatible(header.model_id, header.embedding_size, self.expected_model_id, self.expected_size)
            if (header.version, header.model_id, len(header.people)) != (version, manifest.model_id, manifest.people):
                raise GalleryError(
                    f"contents (version {header.version}, model {header.model_id!r:.60}, {len(header.people)} "
                    f"people) disagree with the manifest ({manifest.model_id!r:.60}, {manifest.people} people)"
                )
            gallery = _build(header, matrix_bytes)
        except GalleryError as exc:
            raise self._fail(f"gallery version {version}: {exc}", version) from None
        self._manifest = None
        self._forget_older_than(version + 1)
        self.installed_version = version
        self.last_data = data
        self.error = None
        return gallery
