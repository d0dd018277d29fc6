"""`rollcall models fetch` against a real local HTTP server: resume, restart, corruption, archives, offline, CLI."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import os
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from edge.recognition.fetch import BASE_URL_ENV, fetch_pack
from edge.recognition.packs import MODEL_DIR_ENV, ModelError, load_manifest, verify_pack
from rollcall.models_cli import add_models_commands
from tests.helpers.brokers import free_port

pytestmark = pytest.mark.integration

Mode = Literal["normal", "drop_once", "corrupt", "ignore_range"]
ORIGIN = "https://models.example.invalid"


@dataclass
class Served:
    """One file the test server offers, and how it misbehaves."""

    body: bytes
    mode: Mode = "normal"
    dropped: bool = False


@dataclass(frozen=True)
class Hit:
    """One request the server answered."""

    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class ModelServer:
    """http.server in a thread on 127.0.0.1, with Range support and ways to fail written here."""

    files: dict[str, Served] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def hits_for(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                asked = self.headers.get("Range")
                if self.path in owner.redirects:  # as GitHub release downloads do
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    owner.hits.append(Hit(self.path, asked, 302, 0))
                    return
                served = owner.files.get(self.path)
                if served is None:
                    self.send_error(404)
                    owner.hits.append(Hit(self.path, asked, 404, 0))
                    return
                body = served.body
                if served.mode == "corrupt":
                    body = bytes(b ^ 0x55 if i % 1000 == 0 else b for i, b in enumerate(body))
                start, status = 0, 200
                if asked is not None and served.mode != "ignore_range":
                    match = re.fullmatch(r"bytes=(\d+)-", asked)
                    assert match is not None, asked
                    start, status = int(match[1]), 206
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        owner.hits.append(Hit(self.path, asked, 416, 0))
                        return
                rest = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(rest)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if served.mode == "drop_once" and not served.dropped:
                    served.dropped = True
                    half = len(rest) // 2
                    self.wfile.write(rest[:half])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    owner.hits.append(Hit(self.path, asked, status, half))
                    return
                self.wfile.write(rest)
                owner.hits.append(Hit(self.path, asked, status, len(rest)))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="model-server", daemon=True
        ).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ModelServer]:
    instance = ModelServer()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@dataclass(frozen=True)
class Entry:
    """A file in the test manifest: its bytes, its URL path, and (optionally) the archive holding it."""

    name: str
    blob: bytes
    url_path: str
    archive: str | None = None
    member: str | None = None


def write_manifest(path: Path, detector: Entry, recogniser: Entry, *, pack: str = "test-pack") -> Path:
    rows = ["schema = 1", f'default_pack = "{pack}"']
    for entry, kind in ((detector, "detector"), (recogniser, "recogniser")):
        rows += [
            f'[files."{entry.name}"]',
            f'kind = "{kind}"',
            f'family = "{"scrfd" if kind == "detector" else "arcface"}"',
            f'sha256 = "{hashlib.sha256(entry.blob).hexdigest()}"',
            f"size = {len(entry.blob)}",
            f'url = "{ORIGIN}{entry.url_path}"',
            'licence = "random test bytes"',
            "commercial_use = true",
            'input_name = "input"',
            "input_shape = [1, 3, 112, 112]",
            'colour = "rgb"',
            "mean = 127.5",
            "std = 127.5",
        ]
        if kind == "recogniser":
            rows.append("embedding_size = 128")
        if entry.archive is not None:
            rows += [f'archive = "{entry.archive}"', f'member = "{entry.member}"']
    rows += [
        f"[packs.{pack}]",
        'description = "random bytes standing in for models"',
        f'detector = "{detector.name}"',
        f'recogniser = "{recogniser.name}"',
        'licence = "test"',
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def pack(tmp_path: Path, server: ModelServer) -> tuple[Path, Entry, Entry]:
    """A manifest of two random files (600 kB and 300 kB) that the server offers."""
    detector = Entry("det_test.onnx", os.urandom(600_000), "/org/repo/raw/abc/det_test.onnx")
    recogniser = Entry("rec_test.onnx", os.urandom(300_000), "/org/other/raw/def/weights/rec.onnx")
    for entry in (detector, recogniser):
        server.files[entry.url_path] = Served(entry.blob)
    return write_manifest(tmp_path / "manifest.toml", detector, recogniser), detector, recogniser


def test_fetch_downloads_verifies_and_then_skips(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, recogniser = pack
    manifest = load_manifest(manifest_path)
    target = tmp_path / "models" / "nested"
    (target).mkdir(parents=True)
    (target / recogniser.name).write_bytes(b"an old, wrong file")

    results = fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert [(r.file.name, r.action) for r in results] == [
        (detector.name, "downloaded"),
        (recogniser.name, "downloaded"),
    ]
    assert (target / detector.name).read_bytes() == detector.blob
    assert (target / recogniser.name).read_bytes() == recogniser.blob, "a wrong file is replaced"
    assert all(check.verified for check in verify_pack(manifest, None, target))
    assert sorted(p.name for p in target.iterdir()) == sorted([detector.name, recogniser.name]), "no .part left"
    assert [hit.path for hit in server.hits] == [detector.url_path, recogniser.url_path], "the mirror kept the paths"

    again = fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert [r.action for r in again] == ["present", "present"]
    assert len(server.hits) == 2, "verified files are not downloaded again"


def test_an_interrupted_download_resumes_from_the_part_file(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    manifest = load_manifest(manifest_path)
    server.files[detector.url_path].mode = "drop_once"
    target = tmp_path / "models"

    with pytest.raises(ModelError) as caught:
        fetch_pack(manifest, None, target, base_url_override=server.base_url, retries=0, timeout=10)
    half = len(detector.blob) // 2
    part = target / f"{detector.name}.part"
    assert "interrupted" in str(caught.value) and "run the command again to resume" in str(caught.value)
    assert part.stat().st_size == half
    assert part.read_bytes() == detector.blob[:half]
    assert not (target / detector.name).exists()

    results = fetch_pack(manifest, None, target, base_url_override=server.base_url, retries=0, timeout=10)
    assert results[0].action == "downloaded"
    first, second = server.hits_for(detector.url_path)
    assert (first.range, first.status, first.sent) == (None, 200, half)
    assert (second.range, second.status, second.sent) == (f"bytes={half}-", 206, len(detector.blob) - half)
    assert (target / detector.name).read_bytes() == detector.blob
    assert not part.exists()


def test_one_fetch_resumes_by_itself_after_a_dropped_connection(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    server.files[detector.url_path].mode = "drop_once"
    results = fetch_pack(
        load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, retry_delay_s=0, timeout=10
    )
    assert [r.action for r in results] == ["downloaded", "downloaded"]
    assert [hit.range for hit in server.hits_for(detector.url_path)] == [None, f"bytes={len(detector.blob) // 2}-"]
    assert (tmp_path / detector.name).read_bytes() == detector.blob


def test_a_server_that_ignores_range_restarts_the_file(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    server.files[detector.url_path].mode = "ignore_range"
    (tmp_path / f"{detector.name}.part").write_bytes(detector.blob[:1000])
    fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    (hit,) = server.hits_for(detector.url_path)
    assert (hit.range, hit.status, hit.sent) == ("bytes=1000-", 200, len(detector.blob))
    assert (tmp_path / detector.name).read_bytes() == detector.blob, "the whole body replaced the old part"


def test_a_stale_part_file_that_does_not_verify_is_downloaded_again_whole(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    (tmp_path / f"{detector.name}.part").write_bytes(os.urandom(1000))
    fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    assert [(hit.range, hit.status) for hit in server.hits_for(detector.url_path)] == [
        ("bytes=1000-", 206),
        (None, 200),
    ]
    assert (tmp_path / detector.name).read_bytes() == detector.blob


def test_a_complete_part_file_is_checked_without_a_request(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, recogniser = pack
    (tmp_path / f"{detector.name}.part").write_bytes(detector.blob)
    (tmp_path / f"{recogniser.name}.part").write_bytes(os.urandom(len(recogniser.blob)))
    fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    assert server.hits_for(detector.url_path) == []
    assert [hit.range for hit in server.hits_for(recogniser.url_path)] == [None], "a wrong full part: downloaded anew"
    assert (tmp_path / detector.name).read_bytes() == detector.blob
    assert (tmp_path / recogniser.name).read_bytes() == recogniser.blob


def test_a_part_file_longer_than_the_file_is_discarded(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, _, recogniser = pack
    (tmp_path / f"{recogniser.name}.part").write_bytes(os.urandom(len(recogniser.blob) + 10))
    fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    assert [hit.range for hit in server.hits_for(recogniser.url_path)] == [None]
    assert (tmp_path / recogniser.name).read_bytes() == recogniser.blob


def test_corrupted_bytes_are_rejected_and_not_left_in_place(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, recogniser = pack
    server.files[recogniser.url_path].mode = "corrupt"
    with pytest.raises(ModelError) as caught:
        fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    corrupted = bytes(b ^ 0x55 if i % 1000 == 0 else b for i, b in enumerate(recogniser.blob))
    message = str(caught.value)
    assert f"{recogniser.name}: sha256 mismatch" in message
    assert f"expected {hashlib.sha256(recogniser.blob).hexdigest()}" in message
    assert f"got {hashlib.sha256(corrupted).hexdigest()}" in message
    assert not (tmp_path / recogniser.name).exists()
    assert not (tmp_path / f"{recogniser.name}.part").exists()
    assert (tmp_path / detector.name).read_bytes() == detector.blob, "the good file before it stays"


def test_a_server_offering_another_size_is_refused_before_the_download(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    server.files[detector.url_path] = Served(detector.blob + b"extra")
    with pytest.raises(ModelError, match=rf"offers {len(detector.blob) + 5} bytes but the manifest expects"):
        fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    assert list(tmp_path.glob("det_test.onnx*")) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return buffer.getvalue()


def test_members_of_a_zip_archive_are_extracted_and_verified(tmp_path: Path, server: ModelServer) -> None:
    detector = Entry("det_z.onnx", os.urandom(200_000), "/rel/v1/bundle.zip", "bundle.zip", "det_z.onnx")
    recogniser = Entry("rec_z.onnx", os.urandom(100_000), "/rel/v1/bundle.zip", "bundle.zip", "rec_z.onnx")
    # The detector sits in a folder inside the zip: a unique member with the same base name matches.
    server.files["/rel/v1/bundle.zip"] = Served(
        _zip({"bundle/det_z.onnx": detector.blob, "rec_z.onnx": recogniser.blob, "bundle/readme.txt": b"hi"})
    )
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", detector, recogniser))
    target = tmp_path / "models"

    results = fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert [(r.file.name, r.action) for r in results] == [("det_z.onnx", "extracted"), ("rec_z.onnx", "extracted")]
    assert (target / "det_z.onnx").read_bytes() == detector.blob
    assert (target / "rec_z.onnx").read_bytes() == recogniser.blob
    assert len(server.hits_for("/rel/v1/bundle.zip")) == 1, "one archive, downloaded once for both members"
    assert sorted(p.name for p in target.iterdir()) == ["det_z.onnx", "rec_z.onnx"], "the archive is removed"


def test_redirects_are_followed_and_keep_the_range(tmp_path: Path, server: ModelServer) -> None:
    detector = Entry("det_r.onnx", os.urandom(50_000), "/releases/download/v1/pack.zip", "pack.zip", "det_r.onnx")
    recogniser = Entry("rec_r.onnx", os.urandom(50_000), "/releases/download/v1/pack.zip", "pack.zip", "rec_r.onnx")
    archive = _zip({"det_r.onnx": detector.blob, "rec_r.onnx": recogniser.blob})
    server.redirects["/releases/download/v1/pack.zip"] = "/objects/123/pack.zip"
    server.files["/objects/123/pack.zip"] = Served(archive)
    target = tmp_path / "models"
    target.mkdir()
    (target / "pack.zip.part").write_bytes(archive[:700])
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", detector, recogniser))
    results = fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert [r.action for r in results] == ["extracted", "extracted"]
    assert [(h.path, h.range, h.status) for h in server.hits] == [
        ("/releases/download/v1/pack.zip", "bytes=700-", 302),
        ("/objects/123/pack.zip", "bytes=700-", 206),
    ]
    assert (target / "rec_r.onnx").read_bytes() == recogniser.blob


def test_an_archive_part_longer_than_the_archive_starts_again(tmp_path: Path, server: ModelServer) -> None:
    detector = Entry("det_z.onnx", os.urandom(5000), "/rel/bundle.zip", "bundle.zip", "det_z.onnx")
    recogniser = Entry("rec_z.onnx", os.urandom(5000), "/rel/bundle.zip", "bundle.zip", "rec_z.onnx")
    archive = _zip({"det_z.onnx": detector.blob, "rec_z.onnx": recogniser.blob})
    server.files["/rel/bundle.zip"] = Served(archive)
    target = tmp_path / "models"
    target.mkdir()
    (target / "bundle.zip.part").write_bytes(os.urandom(len(archive) + 100))
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", detector, recogniser))
    fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert [(h.range, h.status) for h in server.hits] == [(f"bytes={len(archive) + 100}-", 416), (None, 200)]
    assert (target / "det_z.onnx").read_bytes() == detector.blob


def test_a_zip_member_with_the_wrong_bytes_is_rejected(tmp_path: Path, server: ModelServer) -> None:
    detector = Entry("det_z.onnx", os.urandom(5000), "/rel/bundle.zip", "bundle.zip", "det_z.onnx")
    recogniser = Entry("rec_z.onnx", os.urandom(5000), "/rel/bundle.zip", "bundle.zip", "rec_z.onnx")
    server.files["/rel/bundle.zip"] = Served(_zip({"det_z.onnx": detector.blob, "rec_z.onnx": os.urandom(5000)}))
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", detector, recogniser))
    target = tmp_path / "models"
    with pytest.raises(ModelError, match=r"rec_z\.onnx: sha256 mismatch"):
        fetch_pack(manifest, None, target, base_url_override=server.base_url, timeout=10)
    assert not (target / "rec_z.onnx").exists() and not (target / "rec_z.onnx.part").exists()
    assert not (target / "bundle.zip").exists(), "an archive that cannot give the pinned bytes is not kept"


def test_a_missing_zip_member_names_what_the_archive_holds(tmp_path: Path, server: ModelServer) -> None:
    detector = Entry("det_z.onnx", b"d" * 100, "/rel/b.zip", "b.zip", "det_z.onnx")
    recogniser = Entry("rec_z.onnx", b"r" * 100, "/rel/b.zip", "b.zip", "rec_z.onnx")
    server.files["/rel/b.zip"] = Served(_zip({"det_z.onnx": detector.blob, "other.onnx": b"x"}))
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", detector, recogniser))
    with pytest.raises(ModelError, match=r"b\.zip holds no single member 'rec_z\.onnx' \(it holds: det_z\.onnx, other"):
        fetch_pack(manifest, None, tmp_path / "models", base_url_override=server.base_url, timeout=10)


def test_an_unreachable_server_says_offline_and_how_to_set_the_model_dir(
    tmp_path: Path, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, recogniser = pack
    closed = f"http://127.0.0.1:{free_port()}"
    target = tmp_path / "models"
    with pytest.raises(ModelError) as caught:
        fetch_pack(load_manifest(manifest_path), None, target, base_url_override=closed, timeout=10)
    message = str(caught.value)
    assert "seems to be offline" in message
    assert f"{MODEL_DIR_ENV}=/that/folder" in message and "models.dir" in message and BASE_URL_ENV in message
    assert detector.name in message and recogniser.name in message
    assert list(target.iterdir()) == []


def test_an_http_error_is_not_called_offline(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    del server.files[detector.url_path]
    with pytest.raises(ModelError) as caught:
        fetch_pack(load_manifest(manifest_path), None, tmp_path, base_url_override=server.base_url, timeout=10)
    assert "answered HTTP 404" in str(caught.value) and detector.url_path in str(caught.value)
    assert "offline" not in str(caught.value)


def test_progress_sees_growing_byte_counts_up_to_the_size(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, recogniser = pack
    seen: dict[str, list[tuple[int, int | None]]] = {}
    fetch_pack(
        load_manifest(manifest_path),
        None,
        tmp_path,
        base_url_override=server.base_url,
        progress=lambda name, done, total: seen.setdefault(name, []).append((done, total)),
        timeout=10,
    )
    for entry in (detector, recogniser):
        calls = seen[entry.name]
        counts = [done for done, _ in calls]
        assert len(calls) >= 3, calls
        assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == len(entry.blob)
        assert {total for _, total in calls} == {len(entry.blob)}


def test_the_mirror_can_come_from_the_environment(
    tmp_path: Path, server: ModelServer, pack: tuple[Path, Entry, Entry]
) -> None:
    manifest_path, detector, _ = pack
    results = fetch_pack(
        load_manifest(manifest_path), None, tmp_path, environ={BASE_URL_ENV: server.base_url}, timeout=10
    )
    assert [r.action for r in results] == ["downloaded", "downloaded"]
    assert server.hits[0].path == detector.url_path


# --- the commands end to end ------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rollcall")
    add_models_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


def test_cli_fetch_then_verify(
    tmp_path: Path,
    server: ModelServer,
    pack: tuple[Path, Entry, Entry],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest_path, detector, _ = pack
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    target = tmp_path / "fetched"
    common = ["--dir", str(target), "--manifest", str(manifest_path)]

    assert _run(["models", "fetch", "test-pack", *common, "--base-url", server.base_url]) == 0
    captured = capsys.readouterr()
    assert f"downloaded  {detector.name}  sha256 ok" in captured.out
    assert f"pack test-pack is ready in {target}" in captured.out
    assert f"set {MODEL_DIR_ENV}={target}" in captured.out
    assert re.search(rf"{detector.name}  \[#+\] 100%  600\.0 kB / 600\.0 kB", captured.err), captured.err

    assert _run(["models", "verify", "test-pack", *common]) == 0
    assert "all 1 pack verified" in capsys.readouterr().out

    monkeypatch.setenv(BASE_URL_ENV, server.base_url)
    assert _run(["models", "fetch", "test-pack", *common, "--no-progress"]) == 0
    assert capsys.readouterr().out.count("present") == 2
    assert len(server.hits) == 2


def test_cli_verify_on_an_empty_dir_exits_2_naming_the_missing_files(
    tmp_path: Path, pack: tuple[Path, Entry, Entry], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_path, detector, recogniser = pack
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(["models", "verify", "--dir", str(empty), "--manifest", str(manifest_path)]) == 2
    captured = capsys.readouterr()
    assert f"missing: no file {empty / detector.name}" in captured.out
    assert f"missing: no file {empty / recogniser.name}" in captured.out
    assert f"rollcall models fetch test-pack --dir {empty}" in captured.err


def test_cli_fetch_offline_exits_1_with_the_way_out(
    tmp_path: Path, pack: tuple[Path, Entry, Entry], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_path, _, _ = pack
    argv = ["models", "fetch", "test-pack", "--dir", str(tmp_path / "m"), "--manifest", str(manifest_path)]
    assert _run([*argv, "--base-url", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "seems to be offline" in err and f"{MODEL_DIR_ENV}=" in err
