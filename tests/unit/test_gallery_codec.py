"""Gallery distribution: the rollcall-gallery-1 codec, chunked publication, assembly on the device, encrypted store."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.fernet import Fernet

from edge.door.gallery_store import GalleryStore
from edge.protocol import wire
from edge.recognition import gallery_codec
from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.gallery_codec import (
    FORMAT,
    MAX_CHUNK_BYTES,
    GalleryAssembler,
    GalleryError,
    build_publication,
    decode_gallery,
    encode_gallery,
)
from edge.runtime.keys import KeyFileError, ensure_key

T = wire.Topics("hq")
DEVICE = "door-1"
MODEL = "scrfd500m:mobilefacenet-128"
NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
FLOAT16_STEP = 2.0**-11  # float16's relative rounding error: by Cauchy-Schwarz, a bound on any cosine's error


def _unit_rows(rng: np.random.Generator, count: int, size: int) -> npt.NDArray[np.float32]:
    rows = rng.normal(size=(count, size)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _gallery(
    people: int,
    templates: int = 1,
    size: int = 128,
    version: int = 1,
    model_id: str = MODEL,
    seed: int = 0,
) -> Gallery:
    rng = np.random.default_rng(seed)
    labels = [f"p-{i:05d}" for i in range(people) for _ in range(templates)]
    names = {f"p-{i:05d}": f"Person {i}" for i in range(people) if i % 3}  # some people have no name
    return Gallery(labels, _unit_rows(rng, len(labels), size), names=names, version=version, model_id=model_id)


def _templates(gallery: Gallery) -> dict[str, list[npt.NDArray[np.float32]]]:
    found: dict[str, list[npt.NDArray[np.float32]]] = {}
    for label, row in zip(gallery.labels, gallery.embeddings, strict=True):
        found.setdefault(label, []).append(np.asarray(row, dtype=np.float32))
    return found


def _pack(header: object, matrix: bytes, magic: bytes = b"RCG1", header_len: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    size = len(text) if header_len is None else header_len
    return zlib.compress(magic + struct.pack("<I", size) + text + matrix)


# --- the codec -----------------------------------------------------------------------------------------------


def test_round_trip_keeps_people_names_templates_version_and_model() -> None:
    rng = np.random.default_rng(1)
    labels = ["bob", "alice", "bob", "carol", "bob"]
    original = Gallery(
        labels, _unit_rows(rng, 5, 128), names={"alice": "Alice Ä.", "bob": "Bob"}, version=7, model_id=MODEL
    )
    decoded = decode_gallery(encode_gallery(original))
    assert decoded.people == ["alice", "bob", "carol"]
    assert decoded.names == {"alice": "Alice Ä.", "bob": "Bob"}
    assert (decoded.version, decoded.model_id, decoded.dimension) == (7, MODEL, 128)
    before, after = _templates(original), _templates(decoded)
    assert sorted(after) == sorted(before)
    worst = 0.0
    for person, rows in before.items():
        assert len(after[person]) == len(rows)
        for a, b in zip(rows, after[person], strict=True):  # each person's templates keep their order
            worst = max(worst, float(np.abs(a - b).max()))
    assert 0.0 < worst < FLOAT16_STEP  # it really went through float16, and lost no more than float16 does
    assert decoded.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(decoded.embeddings, axis=1), 1.0, atol=1e-6)


def test_encoding_is_deterministic_whatever_the_order_of_people() -> None:
    gallery = _gallery(20, templates=2)  # labels p-00000, p-00000, p-00001, p-00001, ...
    firsts, seconds = list(range(0, 40, 2)), list(range(1, 40, 2))
    random.Random(4).shuffle(firsts)
    random.Random(5).shuffle(seconds)
    order = firsts + seconds  # people mixed up, each person's own templates still in their order
    shuffled = Gallery(
        [gallery.labels[i] for i in order],
        gallery.embeddings[order],
        names=gallery.names,
        version=gallery.version,
        model_id=gallery.model_id,
    )
    assert encode_gallery(shuffled) == encode_gallery(gallery)
    assert encode_gallery(_gallery(20, templates=2, seed=1)) != encode_gallery(gallery)
    swapped = list(range(40))
    swapped[0], swapped[1] = 1, 0  # one person's two templates the other way round: other bytes
    assert encode_gallery(
        Gallery(
            [gallery.labels[i] for i in swapped],
            gallery.embeddings[swapped],
            names=gallery.names,
            version=1,
            model_id=MODEL,
        )
    ) != encode_gallery(gallery)


def test_layout_is_magic_header_length_json_header_then_float16_matrix() -> None:
    gallery = Gallery(
        ["b", "a", "b"],
        _unit_rows(np.random.default_rng(2), 3, 16),
        names={"a": "Ann"},
        version=3,
        model_id="m",
    )
    raw = zlib.decompress(encode_gallery(gallery))
    assert raw[:4] == b"RCG1"
    (header_len,) = struct.unpack("<I", raw[4:8])
    header = json.loads(raw[8 : 8 + header_len].decode())
    assert header == {
        "version": 3,
        "model_id": "m",
        "embedding_size": 16,
        "people": [{"id": "a", "name": "Ann", "templates": 1}, {"id": "b", "name": None, "templates": 2}],
    }
    matrix = np.frombuffer(raw[8 + header_len :], dtype="<f2").reshape(3, 16)
    assert np.array_equal(matrix, gallery.embeddings[[1, 0, 2]].astype(np.float16))


def test_empty_gallery_keeps_its_embedding_size() -> None:
    empty = Gallery([], np.zeros((0, 128), dtype=np.float32), version=5, model_id=MODEL)
    manifest, chunks = build_publication(empty, DEVICE, NOW)
    assert (manifest.people, manifest.embedding_size, len(chunks)) == (0, 128, 1)
    decoded = decode_gallery(encode_gallery(empty))
    assert (len(decoded), decoded.embeddings.shape, decoded.version) == (0, (0, 128), 5)


def test_float16_changes_scores_by_less_than_its_bound_and_never_the_clear_best_match() -> None:
    rng = np.random.default_rng(5)
    gallery = _gallery(300, templates=2, seed=6)
    decoded = decode_gallery(encode_gallery(gallery))
    strangers = _unit_rows(rng, 1000, 128)
    noisy = gallery.embeddings[rng.integers(0, len(gallery.labels), 1000)] + rng.normal(0, 0.04, (1000, 128))
    known = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    queries = np.concatenate([strangers, known])

    exact, approx = gallery.person_scores(queries), decoded.person_scores(queries)
    error = float(np.abs(exact - approx).max())
    assert 0.0 < error < FLOAT16_STEP / 2  # measured 1.0e-4 on 128-d unit vectors; the proven bound is 4.9e-4

    top2 = np.sort(exact, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * FLOAT16_STEP  # where no float16 rounding can reorder the best two
    assert clear.mean() > 0.97
    assert np.array_equal(exact.argmax(axis=1)[clear], approx.argmax(axis=1)[clear])

    policy = MatchPolicy()
    before = gallery.match_many(known, policy)
    after = decoded.match_many(known, policy)
    assert [m.best_id for m in after] == [m.best_id for m in before]
    assert [m.person_id for m in after] == [m.person_id for m in before]
    assert sum(m.person_id is not None for m in after) > 900  # the known faces really are recognised


def test_ten_thousand_people_stay_under_3_mb_and_every_chunk_fits_the_wire() -> None:
    gallery = _gallery(10_000, version=12)
    manifest, chunks = build_publication(gallery, DEVICE, NOW)
    # 2,410,988 bytes when measured (10,000 x 128 float16 = 2,560,000 before zlib, plus names and ids)
    assert manifest.size_bytes < 3_000_000
    assert manifest.chunks == len(chunks) == -(-manifest.size_bytes // (256 * 1024))
    assert (manifest.people, manifest.embedding_size, manifest.format) == (10_000, 128, FORMAT)
    for chunk in chunks:
        raw = wire.encode(chunk)
        assert len(raw) <= wire.MAX_BINARY_PAYLOAD_BYTES
        _, back = wire.decode(T.device_gallery_chunk(DEVICE, chunk.index), raw)
        assert back == chunk
    _, back_manifest = wire.decode(T.device_gallery(DEVICE), wire.encode(manifest))
    assert back_manifest == manifest

    assembler = GalleryAssembler(MODEL, 128)
    results = _feed(assembler, [manifest, *chunks])
    assert len(results) == 1 and len(results[0]) == 10_000
    assert hashlib.sha256(assembler.last_data or b"").hexdigest() == manifest.sha256


def test_largest_chunk_still_fits_with_the_longest_ids() -> None:
    rng = np.random.default_rng(7)
    big = Gallery([f"p{i}" for i in range(8000)], _unit_rows(rng, 8000, 128), version=2**62, model_id=MODEL)
    device = "d" * 64
    _, chunks = build_publication(big, device, NOW, chunk_bytes=MAX_CHUNK_BYTES)
    assert len(chunks) == 2 and len(chunks[0].data) == MAX_CHUNK_BYTES
    raw = wire.encode(chunks[0])
    assert wire.MAX_BINARY_PAYLOAD_BYTES - 512 < len(raw) <= wire.MAX_BINARY_PAYLOAD_BYTES
    wire.decode(T.device_gallery_chunk(device, 0), raw)
    with pytest.raises(ValueError, match="chunk_bytes"):
        build_publication(big, device, NOW, chunk_bytes=MAX_CHUNK_BYTES + 1)
    with pytest.raises(ValueError, match="chunk_bytes"):
        build_publication(big, device, NOW, chunk_bytes=0)


def _valid_header(**changes: object) -> dict[str, object]:
    header: dict[str, object] = {
        "version": 1,
        "model_id": "m",
        "embedding_size": 16,
        "people": [{"id": "a", "name": None, "templates": 2}],
    }
    header.update(changes)
    return header


GOOD_MATRIX = np.full((2, 16), 0.25, dtype="<f2").tobytes()

BAD_GALLERIES: dict[str, tuple[bytes, str]] = {
    "not zlib": (b"hello, gallery", "not zlib data"),
    "truncated": (_pack(_valid_header(), GOOD_MATRIX)[:-5], "truncated"),
    "stray bytes": (_pack(_valid_header(), GOOD_MATRIX) + b"xx", "stray bytes"),
    "bad magic": (_pack(_valid_header(), GOOD_MATRIX, magic=b"RCG2"), "magic"),
    "too short": (zlib.compress(b"RCG"), "too short"),
    "header too long": (_pack(_valid_header(), GOOD_MATRIX, header_len=10**6), "header length"),
    "header not json": (zlib.compress(b"RCG1" + struct.pack("<I", 3) + b"{x}"), "not UTF-8 JSON"),
    "header a list": (_pack([1, 2], b""), "must be a JSON object"),
    "missing field": (_pack({"version": 1, "model_id": "m", "people": []}, b""), "missing ['embedding_size']"),
    "unknown field": (_pack(_valid_header(extra=1), GOOD_MATRIX), "unknown ['extra']"),
    "version 0": (_pack(_valid_header(version=0), GOOD_MATRIX), "version"),
    "version bool": (_pack(_valid_header(version=True), GOOD_MATRIX), "version"),
    "empty model": (_pack(_valid_header(model_id=""), GOOD_MATRIX), "model_id"),
    "size 8": (_pack(_valid_header(embedding_size=8), GOOD_MATRIX), "embedding_size"),
    "bad person id": (
        _pack(_valid_header(people=[{"id": "a/b", "name": None, "templates": 2}]), GOOD_MATRIX),
        "not a valid person id",
    ),
    "twice": (
        _pack(
            _valid_header(people=[{"id": "a", "name": None, "templates": 1}, {"id": "a", "name": "A", "templates": 1}]),
            GOOD_MATRIX,
        ),
        "appears twice",
    ),
    "no templates": (_pack(_valid_header(people=[{"id": "a", "name": None, "templates": 0}]), b""), "templates"),
    "name a number": (_pack(_valid_header(people=[{"id": "a", "name": 5, "templates": 2}]), GOOD_MATRIX), "name"),
    "matrix short": (_pack(_valid_header(), GOOD_MATRIX[:-2]), "need 64"),
    "matrix long": (_pack(_valid_header(), GOOD_MATRIX + b"\0\0"), "need 64"),
    "nan": (_pack(_valid_header(), np.full((2, 16), np.nan, dtype="<f2").tobytes()), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_GALLERIES))
def test_decode_refuses_bad_bytes_with_a_reason(case: str) -> None:
    data, reason = BAD_GALLERIES[case]
    with pytest.raises(GalleryError, match=re.escape(reason)):
        decode_gallery(data)


def test_the_valid_hand_made_gallery_decodes() -> None:
    decoded = decode_gallery(_pack(_valid_header(), GOOD_MATRIX))  # the base of the bad cases above is sound
    assert decoded.people == ["a"] and decoded.embeddings.shape == (2, 16)


def test_the_assembler_refuses_to_hold_more_than_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, chunks = _publication(2)
    monkeypatch.setattr(gallery_codec, "MAX_GALLERY_BYTES", 4000)
    assembler = GalleryAssembler(MODEL, 128)
    with pytest.raises(GalleryError, match=f"is {manifest.size_bytes} bytes, over the 4000-byte limit"):
        assembler.feed(manifest)
    _feed(assembler, [chunks[0], chunks[0], chunks[1]])  # a duplicate does not count twice: 3000 bytes held
    with pytest.raises(GalleryError, match="chunks exceed 4000 bytes"):
        _feed(assembler, [chunks[2]])
    assert assembler.buffered_versions == []


def test_decode_refuses_a_decompression_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _pack(_valid_header(), GOOD_MATRIX)
    monkeypatch.setattr(gallery_codec, "MAX_GALLERY_BYTES", 100)
    with pytest.raises(GalleryError, match="more than the 100-byte limit"):
        decode_gallery(data)


@pytest.mark.parametrize(
    ("gallery", "reason"),
    [
        (Gallery(["a"], np.ones((1, 128), dtype=np.float32), version=0, model_id=MODEL), "version"),
        (Gallery(["a"], np.ones((1, 128), dtype=np.float32), version=1, model_id=""), "model_id"),
        (Gallery(["a"], np.full((1, 128), np.nan, dtype=np.float32), version=1, model_id=MODEL), "NaN"),
        (Gallery(["a"], np.full((1, 128), 1e6, dtype=np.float32), version=1, model_id=MODEL), "float16"),
        (Gallery(["a b"], np.ones((1, 128), dtype=np.float32), version=1, model_id=MODEL), "person id"),
        (Gallery(["a"], np.ones((1, 8), dtype=np.float32), version=1, model_id=MODEL), "embedding_size"),
    ],
)
def test_encode_refuses_what_devices_would_refuse(gallery: Gallery, reason: str) -> None:
    with pytest.raises(GalleryError, match=reason):
        encode_gallery(gallery)


# --- the assembler -------------------------------------------------------------------------------------------

Piece = wire.GalleryManifest | wire.GalleryChunk


def _through_wire(payload: Piece) -> Piece:
    """Send a payload through encode and decode on its own topic, as the device receives it."""
    if isinstance(payload, wire.GalleryManifest):
        topic = T.device_gallery(payload.device)
    else:
        topic = T.device_gallery_chunk(payload.device, payload.index)
    _, back = wire.decode(topic, wire.encode(payload))
    assert isinstance(back, wire.GalleryManifest | wire.GalleryChunk)
    return back


def _feed(assembler: GalleryAssembler, pieces: Iterable[Piece]) -> list[Gallery]:
    results = []
    for piece in pieces:
        gallery = assembler.feed(_through_wire(piece))
        if gallery is not None:
            results.append(gallery)
    return results


def _publication(version: int, people: int = 40, seed: int = 0) -> tuple[wire.GalleryManifest, list[wire.GalleryChunk]]:
    manifest, chunks = build_publication(_gallery(people, version=version, seed=seed), DEVICE, NOW, chunk_bytes=1500)
    assert len(chunks) >= 4
    return manifest, chunks


def _in_order(m: wire.GalleryManifest, c: list[wire.GalleryChunk], old: list[wire.GalleryChunk]) -> list[Piece]:
    return [m, *c]


def _reversed(m: wire.GalleryManifest, c: list[wire.GalleryChunk], old: list[wire.GalleryChunk]) -> list[Piece]:
    return [*reversed(c), m]


def _duplicated(m: wire.GalleryManifest, c: list[wire.GalleryChunk], old: list[wire.GalleryChunk]) -> list[Piece]:
    return [c[1], c[0], c[1], m, c[0], *c, *c]


def _chunks_first(m: wire.GalleryManifest, c: list[wire.GalleryChunk], old: list[wire.GalleryChunk]) -> list[Piece]:
    return [*c, m]


def _old_interleaved(m: wire.GalleryManifest, c: list[wire.GalleryChunk], old: list[wire.GalleryChunk]) -> list[Piece]:
    # The broker still retains the older version's chunks, under the same and higher indexes, in any order.
    pieces: list[Piece] = [old[0], c[0], old[1], m, old[2]]
    for new, stale in zip(c[1:], old[3:], strict=False):
        pieces += [stale, new]
    return [*pieces, *old]


ORDERS: dict[str, Callable[[wire.GalleryManifest, list[wire.GalleryChunk], list[wire.GalleryChunk]], list[Piece]]] = {
    "in order": _in_order,
    "reversed": _reversed,
    "duplicated": _duplicated,
    "chunks before manifest": _chunks_first,
    "older version interleaved": _old_interleaved,
}


def test_leftover_chunks_of_older_versions_are_not_kept_in_memory() -> None:
    _, old1 = _publication(1, people=80, seed=8)
    _, old2 = _publication(2, people=80, seed=9)
    manifest, chunks = _publication(3)
    assembler = GalleryAssembler(MODEL, 128)
    _feed(assembler, [old1[0], old2[0]])
    assert assembler.buffered_versions == [2]  # before any manifest, only the newest version is worth keeping
    _feed(assembler, [chunks[0], old1[1], old2[1]])
    assert assembler.buffered_versions == [3]
    _feed(assembler, [manifest, old2[2], old1[3], *old2[4:]])
    assert assembler.buffered_versions == [3] and assembler.pending == (3, 1, len(chunks))
    assert len(_feed(assembler, chunks[1:])) == 1
    assert assembler.buffered_versions == []
    _feed(assembler, [*chunks, *old2])  # retained leftovers after install: ignored
    assert assembler.buffered_versions == []
    installed = GalleryAssembler(MODEL, 128, installed_version=3)
    _feed(installed, [*chunks, *old2])
    assert installed.buffered_versions == []


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_assembler_returns_the_gallery_once_whatever_the_order(order: str) -> None:
    _, old_chunks = _publication(1, people=80, seed=9)  # more chunks than version 2, so old indexes linger
    manifest, chunks = _publication(2)
    assembler = GalleryAssembler(MODEL, 128)
    results = _feed(assembler, ORDERS[order](manifest, chunks, old_chunks))
    assert len(results) == 1
    expected = _gallery(40, version=2)
    assert results[0].people == expected.people and results[0].version == 2
    assert np.allclose(results[0].embeddings, decode_gallery(encode_gallery(expected)).embeddings)
    assert assembler.last_data == encode_gallery(expected)
    assert (assembler.installed_version, assembler.error, assembler.pending) == (2, None, None)


def test_assembler_reports_progress_until_complete() -> None:
    manifest, chunks = _publication(3)
    assembler = GalleryAssembler(MODEL, 128)
    assert assembler.pending is None
    assert _feed(assembler, [manifest, chunks[0]]) == []
    assert assembler.pending == (3, 1, len(chunks))
    assert len(_feed(assembler, chunks[1:])) == 1


def test_a_flipped_byte_is_a_checksum_error_and_the_next_version_still_assembles() -> None:
    assembler = GalleryAssembler(MODEL, 128)
    first_manifest, first_chunks = _publication(1)
    assert len(_feed(assembler, [first_manifest, *first_chunks])) == 1

    manifest, chunks = _publication(2, seed=1)
    data = bytearray(chunks[1].data)
    data[10] ^= 0x01
    bad = chunks[1].model_copy(update={"data": bytes(data)})
    assert _feed(assembler, [manifest, chunks[0], bad, *chunks[3:]]) == []
    with pytest.raises(GalleryError, match="version 2: checksum mismatch"):
        assembler.feed(_through_wire(chunks[2]))
    assert assembler.error is not None and "checksum mismatch" in assembler.error
    assert (assembler.installed_version, assembler.pending) == (1, None)  # the old gallery stays in use
    assert _feed(assembler, chunks) == []  # the bad version's chunks, without its manifest, complete nothing

    good_manifest, good_chunks = _publication(3, seed=2)
    results = _feed(assembler, [*good_chunks, good_manifest])
    assert len(results) == 1 and results[0].version == 3
    assert assembler.installed_version == 3
    assert not assembler.error  # cleared by the good version


def test_bytes_that_do_not_decode_are_refused_even_with_a_matching_checksum() -> None:
    data = _pack(_valid_header(), GOOD_MATRIX)[:-3]
    manifest = wire.GalleryManifest(
        device=DEVICE,
        version=4,
        created_at=NOW,
        model_id="m",
        embedding_size=16,
        people=1,
        format=FORMAT,
        size_bytes=len(data),
        chunks=1,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    chunk = wire.GalleryChunk(device=DEVICE, version=4, index=0, total=1, data=data)
    assembler = GalleryAssembler("m", 16)
    assert _feed(assembler, [manifest]) == []
    with pytest.raises(GalleryError, match="version 4: gallery bytes are truncated"):
        _feed(assembler, [chunk])
    assert assembler.pending is None and assembler.installed_version == 0


def test_a_manifest_that_disagrees_with_its_bytes_is_refused() -> None:
    manifest, chunks = _publication(2)
    assembler = GalleryAssembler(MODEL, 128)
    with pytest.raises(GalleryError, match="disagree with the manifest"):
        _feed(assembler, [manifest.model_copy(update={"people": 41}), *chunks])
    with pytest.raises(GalleryError, match="bytes arrived, the manifest says"):
        _feed(assembler, [manifest.model_copy(update={"size_bytes": manifest.size_bytes + 1}), *chunks])
    with pytest.raises(GalleryError, match="chunk 0 says"):
        _feed(assembler, [manifest.model_copy(update={"chunks": len(chunks) + 1}), *chunks])
    with pytest.raises(GalleryError, match="has format 'npz'"):
        _feed(assembler, [manifest.model_copy(update={"format": "npz"})])
    assert len(_feed(assembler, [manifest, *chunks])) == 1  # the real one still assembles afterwards


@pytest.mark.parametrize(
    ("model_id", "size", "named"),
    [
        ("arcface-r100", 128, ["'arcface-r100'", repr(MODEL)]),
        (MODEL, 512, ["512", "128"]),
        ("arcface-r100", 512, ["'arcface-r100'", repr(MODEL), "512", "128"]),
    ],
)
def test_an_incompatible_gallery_is_refused_naming_both_sides(model_id: str, size: int, named: list[str]) -> None:
    gallery = _gallery(10, size=size, model_id=model_id, version=5)
    manifest, chunks = build_publication(gallery, DEVICE, NOW, chunk_bytes=1000)
    assembler = GalleryAssembler(MODEL, 128, installed_version=4)
    with pytest.raises(GalleryError, match="incompatible gallery") as caught:
        assembler.feed(_through_wire(manifest))
    for part in named:
        assert part in str(caught.value)
    assert _feed(assembler, chunks) == []  # its chunks never make a gallery
    assert assembler.installed_version == 4 and assembler.error == str(caught.value)


def test_an_incompatible_gallery_hidden_behind_a_lying_manifest_is_still_refused() -> None:
    manifest, chunks = build_publication(_gallery(10, model_id="other-model", version=2), DEVICE, NOW)
    lying = manifest.model_copy(update={"model_id": MODEL})
    with pytest.raises(GalleryError, match="incompatible gallery: model 'other-model'"):
        _feed(GalleryAssembler(MODEL, 128), [lying, *chunks])


def test_the_health_report_can_carry_every_error_even_with_long_model_ids() -> None:
    long_model = "m" * 256
    gallery = _gallery(3, size=512, model_id=long_model, version=2)
    manifest, _ = build_publication(gallery, DEVICE, NOW)
    assembler = GalleryAssembler("x" * 256, 128)
    with pytest.raises(GalleryError):
        assembler.feed(manifest)
    assert assembler.error is not None
    health = wire.Health(
        device=DEVICE, at=NOW, uptime_s=1.0, fps=0.0, cpu_percent=1.0, outbox_depth=0, gallery_error=assembler.error
    )
    wire.decode(T.device_health(DEVICE), wire.encode(health))


def test_versions_only_grow() -> None:
    assembler = GalleryAssembler(MODEL, 128, installed_version=5)
    same_manifest, same_chunks = _publication(5)
    assert _feed(assembler, [same_manifest, *same_chunks]) == []  # what the device already has: nothing to do
    assert assembler.error is None and assembler.pending is None
    older, older_chunks = _publication(4)
    with pytest.raises(GalleryError, match="version 4 is older than the installed version 5"):
        _feed(assembler, [*older_chunks, older])
    newer, newer_chunks = _publication(6)
    assert len(_feed(assembler, [newer, *newer_chunks])) == 1


def test_a_newer_manifest_supersedes_one_still_assembling() -> None:
    assembler = GalleryAssembler(MODEL, 128)
    m2, c2 = _publication(2)
    m3, c3 = _publication(3, seed=3)
    results = _feed(assembler, [m2, c2[0], m3, *c2[1:], *c3])
    assert [g.version for g in results] == [3]

    late = GalleryAssembler(MODEL, 128)  # an older manifest after a newer one does not take its place
    assert _feed(late, [m3, c3[0], m2, *c2]) == []
    assert late.pending == (3, 1, len(c3))
    assert [g.version for g in _feed(late, c3[1:])] == [3]
    with pytest.raises(GalleryError, match="version 2 is older than the installed version 3"):
        _feed(assembler, [m2, *c2])
    assert assembler.installed_version == 3


# --- the encrypted store -------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data() -> bytes:
    return encode_gallery(_gallery(25, templates=2, version=9))


def test_store_saves_encrypted_and_loads(tmp_path: Path, data: bytes) -> None:
    store = GalleryStore(tmp_path / "state" / "gallery.bin", tmp_path / "keys" / "device.key")
    assert store.load() is None and not store.key_file.exists()  # nothing stored: no key made either
    store.save(data)
    assert _mode(store.path) == 0o600 and _mode(store.key_file) == 0o600
    on_disk = store.path.read_bytes()
    assert data not in on_disk and not on_disk.startswith(data[:16])
    assert Fernet(store.key_file.read_bytes().strip()).decrypt(on_disk) == data
    loaded = store.load()
    assert loaded is not None and (loaded.version, len(loaded), loaded.model_id) == (9, 25, MODEL)
    assert store.load_data() == data


def test_save_is_atomic_and_leaves_no_temporary_file(
    tmp_path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "state"
    store = GalleryStore(folder / "gallery.bin", tmp_path / "device.key")
    store.save(data)
    newer = encode_gallery(_gallery(5, version=10))
    store.save(newer)
    assert sorted(p.name for p in folder.iterdir()) == ["gallery.bin"]
    assert store.load_data() == newer

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(GalleryError, match=r"cannot save gallery .*gallery.bin: No space left"):
        store.save(data)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["gallery.bin"]
    assert store.load_data() == newer  # the previous gallery is untouched


def test_key_file_is_created_0600_once_and_kept(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "device.key"
    old_umask = os.umask(0)
    try:
        ensure_key(key_file)
    finally:
        os.umask(old_umask)
    assert _mode(key_file) == 0o600
    first = key_file.read_bytes()
    Fernet(first.strip())
    ensure_key(key_file)
    assert key_file.read_bytes() == first
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["device.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_open_to_others_is_refused(tmp_path: Path, data: bytes, mode: int) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.save(data)
    store.key_file.chmod(mode)
    message = f"chmod 600 {store.key_file}"
    with pytest.raises(GalleryError, match=message):
        store.load()
    with pytest.raises(GalleryError, match=message):
        store.save(data)
    with pytest.raises(KeyFileError, match=message):
        ensure_key(store.key_file)
    store.key_file.chmod(0o600)
    assert store.load() is not None


def test_another_key_or_a_corrupt_file_is_a_gallery_error_naming_the_file(tmp_path: Path, data: bytes) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.save(data)
    good_key = store.key_file.read_bytes()
    store.key_file.write_bytes(Fernet.generate_key() + b"\n")
    with pytest.raises(GalleryError, match=f"gallery {store.path} cannot be decrypted"):
        store.load()
    store.key_file.write_bytes(good_key)
    token = bytearray(store.path.read_bytes())
    token[40] = ord("A") if token[40] != ord("A") else ord("B")
    store.path.write_bytes(bytes(token))
    with pytest.raises(GalleryError, match=f"gallery {store.path} cannot be decrypted"):
        store.load()
    store.key_file.write_bytes(b"not a key\n")
    with pytest.raises(GalleryError, match="line 1 is not a Fernet key"):
        store.load()
    store.key_file.write_bytes(b"\n\n")
    with pytest.raises(GalleryError, match="holds no key"):
        store.load()
    store.key_file.unlink()
    with pytest.raises(GalleryError, match=r"key file .* is missing"):
        store.load()


def test_decrypted_bytes_that_are_no_gallery_are_an_error_naming_the_file(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.save(b"not a gallery")
    with pytest.raises(GalleryError, match=f"gallery {store.path}: gallery bytes are not zlib data"):
        store.load()


def test_rotation_re_encrypts_with_the_new_key_and_old_files_stay_readable(tmp_path: Path, data: bytes) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.save(data)
    old_key = store.key_file.read_bytes().strip()
    old_copy = tmp_path / "backup.bin"
    old_copy.write_bytes(store.path.read_bytes())
    old_copy.chmod(0o600)

    store.rotate_key()
    keys = store.key_file.read_bytes().split()
    assert len(keys) == 2 and keys[1] == old_key and keys[0] != old_key
    assert _mode(store.key_file) == 0o600 and _mode(store.path) == 0o600
    assert store.load_data() == data
    assert GalleryStore(old_copy, store.key_file).load_data() == data  # written before rotation, still readable

    only_new = tmp_path / "new-only.key"
    only_new.write_bytes(keys[0] + b"\n")
    only_new.chmod(0o600)
    assert GalleryStore(store.path, only_new).load_data() == data  # the stored gallery now uses the new key
    with pytest.raises(GalleryError, match="cannot be decrypted"):
        GalleryStore(old_copy, only_new).load()

    store.rotate_key()
    assert len(store.key_file.read_bytes().split()) == 3
    assert store.load_data() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.bin", "device.key", "gallery.bin", "new-only.key"]


def test_rotation_refuses_a_gallery_it_cannot_read_and_changes_nothing(tmp_path: Path, data: bytes) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.save(data)
    store.key_file.write_bytes(Fernet.generate_key() + b"\n")
    before = store.key_file.read_bytes()
    with pytest.raises(GalleryError, match="not rotating"):
        store.rotate_key()
    assert store.key_file.read_bytes() == before


def test_rotation_without_a_stored_gallery_just_adds_a_key(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", tmp_path / "device.key")
    store.rotate_key()
    assert len(store.key_file.read_bytes().split()) == 2 and not store.path.exists()
