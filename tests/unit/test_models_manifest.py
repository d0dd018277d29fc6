"""The model manifest: it parses, pins the real files in $ROLLCALL_MODEL_DIR, and verification names what is wrong."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest

from edge.protocol.progress import Progress
from edge.recognition.fetch import mirror_url
from edge.recognition.packs import (
    MODEL_DIR_ENV,
    ManifestError,
    ModelError,
    check_file,
    load_manifest,
    parse_manifest,
    require_pack,
    resolve_model_dir,
    sha256_file,
    verify_pack,
)
from rollcall.models_cli import add_models_commands
from tests.conftest import REPO_ROOT

PRESENT_HERE = {"det_500m.onnx", "det_2.5g.onnx", "face_detection_yunet_2023mar.onnx", "MobileFaceNet.onnx"}
PACKS = {"scrfd500m-mbf128", "scrfd2.5g-mbf128", "yunet-mbf128", "buffalo_sc", "buffalo_l"}


def real_model_dir() -> Path:
    """$ROLLCALL_MODEL_DIR, which CI always sets; a clear failure (not a skip) when it is missing."""
    value = os.environ.get(MODEL_DIR_ENV)
    if not value:
        pytest.fail(
            f"{MODEL_DIR_ENV} is not set: run with {MODEL_DIR_ENV}=/path/to/shared/models (CI sets it to "
            "../shared/models)",
            pytrace=False,
        )
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{MODEL_DIR_ENV}={value} is not a folder", pytrace=False)
    return path


# --- a small manifest of fake files -----------------------------------------------------------------------------

FILE_TEMPLATE = """
[files."{name}"]
kind = "{kind}"
family = "{family}"
sha256 = "{sha256}"
size = {size}
url = "https://models.example.invalid/weights/{name}"
licence = "test data"
commercial_use = true
input_name = "input"
input_shape = [1, 3, {hw}, {hw}]
colour = "rgb"
mean = 127.5
std = 128.0
{extra}
"""


def fake_manifest(tmp_path: Path, blobs: dict[str, bytes]) -> Path:
    """A manifest with one pack: the first blob is its detector, the second its recogniser."""
    names = list(blobs)
    parts = ['schema = 1\ndefault_pack = "fake"\n']
    for index, (name, blob) in enumerate(blobs.items()):
        kind = "detector" if index == 0 else "recogniser"
        parts.append(
            FILE_TEMPLATE.format(
                name=name,
                kind=kind,
                family="scrfd" if kind == "detector" else "arcface",
                sha256=hashlib.sha256(blob).hexdigest(),
                size=len(blob),
                hw=-1 if kind == "detector" else 112,
                extra="embedding_size = 128" if kind == "recogniser" else "",
            )
        )
    parts.append(
        f'[packs.fake]\ndescription = "fake pack"\ndetector = "{names[0]}"\nrecogniser = "{names[1]}"\n'
        'licence = "test data"\n'
    )
    path = tmp_path / "manifest.toml"
    path.write_text("\n".join(parts))
    return path


# --- the packaged manifest --------------------------------------------------------------------------------------


def test_the_packaged_manifest_parses_with_the_required_packs() -> None:
    manifest = load_manifest()
    assert manifest.source == REPO_ROOT / "models" / "manifest.toml"
    assert set(manifest.packs) >= PACKS
    assert manifest.default_pack == "scrfd500m-mbf128"
    detector, recogniser = manifest.files_of(None)
    assert (detector.name, recogniser.name) == ("det_500m.onnx", "MobileFaceNet.onnx")
    assert (manifest.recogniser_of("buffalo_sc").name, manifest.recogniser_of("buffalo_sc").embedding_size) == (
        "w600k_mbf.onnx",
        512,
    )
    assert (manifest.detector_of("buffalo_l").name, manifest.recogniser_of("buffalo_l").name) == (
        "det_10g.onnx",
        "w600k_r50.onnx",
    )
    assert manifest.detector_of("yunet-mbf128").family == "yunet"


def test_every_pack_names_a_detector_and_a_recogniser_that_exist() -> None:
    manifest = load_manifest()
    for pack in manifest.packs.values():
        assert manifest.files[pack.detector].kind == "detector", pack.name
        assert manifest.files[pack.recogniser].kind == "recogniser", pack.name
        assert pack.description and pack.licence
    used = {name for pack in manifest.packs.values() for name in (pack.detector, pack.recogniser)}
    assert used == set(manifest.files), "every file in the manifest belongs to a pack"


def test_every_file_has_sha256_licence_and_an_https_url() -> None:
    for model in load_manifest().files.values():
        assert re.fullmatch(r"[0-9a-f]{64}", model.sha256), model.name
        assert model.licence.strip(), model.name
        assert model.url.startswith("https://"), model.name
        assert (model.archive is None) == (model.member is None), model.name
        assert model.std > 0 and len(model.input_shape) == 4
        if model.kind == "recogniser":
            assert model.embedding_size in (128, 512), model.name


def test_preprocessing_follows_the_sources() -> None:
    files = load_manifest().files
    scrfd, mbf, yunet = files["det_500m.onnx"], files["MobileFaceNet.onnx"], files["face_detection_yunet_2023mar.onnx"]
    assert (scrfd.colour, scrfd.mean, scrfd.std, scrfd.input_name, scrfd.input_hw) == (
        "rgb",
        127.5,
        128.0,
        "input.1",
        None,
    )
    assert (mbf.colour, mbf.mean, mbf.std, mbf.input_name, mbf.input_hw) == ("rgb", 127.5, 127.5, "input0", (112, 112))
    assert mbf.embedding_size == 128
    assert (yunet.colour, yunet.runtime, yunet.input_hw) == ("bgr", "opencv", (640, 640))
    assert files["w600k_r50.onnx"].archive == "buffalo_l.zip" and files["det_10g.onnx"].archive == "buffalo_l.zip"
    assert files["w600k_mbf.onnx"].url.endswith("/v0.7/buffalo_sc.zip")
    assert not files["det_500m.onnx"].commercial_use and yunet.commercial_use


def test_the_real_files_match_the_manifest_byte_for_byte() -> None:
    model_dir = real_model_dir()
    manifest = load_manifest()
    present = {name for name in manifest.files if (model_dir / name).is_file()}
    assert present >= PRESENT_HERE, f"{model_dir} should hold {sorted(PRESENT_HERE)}"
    for name in sorted(present):
        model = manifest.files[name]
        path = model_dir / name
        assert model.size == path.stat().st_size, name
        assert sha256_file(path) == model.sha256, name
    for name in PRESENT_HERE:
        assert check_file(manifest.files[name], model_dir).verified


def test_every_pinned_sha256_is_the_one_sources_md_gives() -> None:
    sources = real_model_dir() / "SOURCES.md"
    text = sources.read_text(encoding="utf-8")
    for model in load_manifest().files.values():
        assert model.sha256 in text, f"{model.name}: {model.sha256} is not in {sources}"


def test_the_default_pack_is_ready_in_the_real_model_dir() -> None:
    model_dir = real_model_dir()
    ready = require_pack(load_manifest(), None, model_dir)
    assert ready.detector_path == model_dir / "det_500m.onnx"
    assert ready.recogniser_path == model_dir / "MobileFaceNet.onnx"
    assert ready.recogniser.embedding_size == 128


def test_require_pack_lists_missing_files_and_the_fix() -> None:
    model_dir = real_model_dir()
    with pytest.raises(ModelError) as caught:
        require_pack(load_manifest(), "buffalo_l", model_dir)
    message = str(caught.value)
    assert "det_10g.onnx: missing" in message and "w600k_r50.onnx: missing" in message
    assert f"rollcall models fetch buffalo_l --dir {model_dir}" in message and MODEL_DIR_ENV in message


# --- verification -----------------------------------------------------------------------------------------------


def test_verify_tells_missing_wrong_size_and_wrong_hash_apart(tmp_path: Path) -> None:
    blobs = {"det.onnx": os.urandom(3000), "rec.onnx": os.urandom(2000)}
    manifest = load_manifest(fake_manifest(tmp_path, blobs))
    folder = tmp_path / "models"
    folder.mkdir()

    missing = verify_pack(manifest, "fake", folder)
    assert [(c.file.name, c.present, c.status) for c in missing] == [
        ("det.onnx", False, "missing"),
        ("rec.onnx", False, "missing"),
    ]
    assert "no file" in missing[0].problem and not missing[0].ok

    (folder / "det.onnx").write_bytes(blobs["det.onnx"])
    (folder / "rec.onnx").write_bytes(blobs["rec.onnx"][:-1])
    det, rec = verify_pack(manifest, "fake", folder)
    assert det.verified and det.status == "ok" and det.problem == ""
    assert (rec.present, rec.size_ok, rec.sha256_ok, rec.status) == (True, False, None, "wrong size")
    assert "1999 bytes, the manifest says 2000" in rec.problem

    flipped = bytearray(blobs["rec.onnx"])
    flipped[1000] ^= 0xFF
    (folder / "rec.onnx").write_bytes(bytes(flipped))
    rec = verify_pack(manifest, "fake", folder)[1]
    assert (rec.size_ok, rec.sha256_ok, rec.status, rec.ok) == (True, False, "wrong sha256", False)
    assert hashlib.sha256(bytes(flipped)).hexdigest() in rec.problem
    assert manifest.files["rec.onnx"].sha256 in rec.problem

    quick = check_file(manifest.files["rec.onnx"], folder, check_hash=False)
    assert (quick.ok, quick.verified, quick.status) == (True, False, "present"), "a size-only check cannot see it"


def test_verify_catches_a_damaged_copy_of_a_real_model(tmp_path: Path) -> None:
    manifest = load_manifest()
    model_dir = real_model_dir()
    for name in ("det_500m.onnx", "MobileFaceNet.onnx"):
        shutil.copyfile(model_dir / name, tmp_path / name)
    assert all(c.verified for c in verify_pack(manifest, "scrfd500m-mbf128", tmp_path))

    with (tmp_path / "MobileFaceNet.onnx").open("r+b") as stream:
        stream.seek(2_000_000)
        byte = stream.read(1)
        stream.seek(2_000_000)
        stream.write(bytes([byte[0] ^ 1]))
    det, rec = verify_pack(manifest, "scrfd500m-mbf128", tmp_path)
    assert det.verified and rec.status == "wrong sha256"
    with (tmp_path / "det_500m.onnx").open("ab") as stream:
        stream.write(b"\0")
    assert verify_pack(manifest, "scrfd500m-mbf128", tmp_path)[0].status == "wrong size"
    with pytest.raises(ModelError, match="wrong sha256"):
        require_pack(manifest, None, tmp_path)


def test_file_check_without_a_pinned_size_relies_on_sha256(tmp_path: Path) -> None:
    blob = os.urandom(100)
    manifest = load_manifest(fake_manifest(tmp_path, {"d.onnx": blob, "r.onnx": blob}))
    model = manifest.files["d.onnx"]
    unsized = dataclasses.replace(model, size=None)
    (tmp_path / "d.onnx").write_bytes(blob + b"x")
    check = check_file(unsized, tmp_path)
    assert (check.size_ok, check.sha256_ok, check.status) == (None, False, "wrong sha256")


# --- manifest validation ----------------------------------------------------------------------------------------


def _manifest_text(tmp_path: Path) -> str:
    return fake_manifest(tmp_path, {"d.onnx": b"d" * 10, "r.onnx": b"r" * 10}).read_text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('sha256 = "', 'sha256 = "zz'), r'files\."d\.onnx"\.sha256: must be 64 lowercase hex digits'),
        (('kind = "detector"', 'kind = "finder"'), r'files\."d\.onnx"\.kind: must be one of'),
        (('colour = "rgb"', 'colour = "grey"'), r'files\."d\.onnx"\.colour: must be one of'),
        (('licence = "test data"\ncommercial', "commercial"), r'files\."d\.onnx"\.licence: required key is missing'),
        (("std = 128.0", "std = 0"), r'files\."d\.onnx"\.std: must be a positive number'),
        (("size = 10", "size = true"), r'files\."d\.onnx"\.size: must be a positive whole number'),
        (("input_shape = [1, 3, -1, -1]", "input_shape = [3, -1]"), r'files\."d\.onnx"\.input_shape: must be 4'),
        (('url = "https://models', 'url = "ftp://models'), r'files\."d\.onnx"\.url: must be an https:// URL'),
        (("embedding_size = 128", ""), r'files\."r\.onnx"\.embedding_size: required key is missing'),
        (('input_name = "input"', 'input_name = "input"\nsha512 = "x"'), r"sha512: unknown key; expected one of"),
        (('detector = "d.onnx"', 'detector = "nope.onnx"'), r"packs\.fake\.detector: names 'nope\.onnx', which is not"),
        (('detector = "d.onnx"', 'detector = "r.onnx"'), r"packs\.fake\.detector: 'r\.onnx' is a 'recogniser'"),
        (('default_pack = "fake"', 'default_pack = "other"'), r"default_pack: names 'other', which is not in"),
        (("schema = 1", "schema = 2"), r"schema: must be 1"),
        (('[files."d.onnx"]', '[files."../d.onnx"]'), r'files\."\.\./d\.onnx": file names are plain names'),
        (
            ('input_name = "input"', 'input_name = "input"\narchive = "a.zip"'),
            r"archive and member go together",
        ),
    ],
)
def test_a_bad_manifest_names_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    text = _manifest_text(tmp_path)
    assert change[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ManifestError) as caught:
        load_manifest(bad)
    assert re.search(expected, str(caught.value)), str(caught.value)
    assert str(bad) in str(caught.value)


def test_a_bad_key_is_reported_with_its_line(tmp_path: Path) -> None:
    text = _manifest_text(tmp_path).replace('sha256 = "', 'sha256 = "0', 1)
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if row.startswith('sha256 = "0'))
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "m.toml")
    assert caught.value.problems[0].startswith(f'line {line}: files."d.onnx".sha256: must be 64 lowercase hex')


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = _manifest_text(tmp_path).replace("std = 128.0", "std = -1").replace('colour = "rgb"', 'colour = "x"')
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    assert len(caught.value.problems) == 4  # std and colour, in each of the two files
    assert "4 problems" in str(caught.value)


def test_one_archive_needs_one_url(tmp_path: Path) -> None:
    text = _manifest_text(tmp_path)
    text = text.replace('input_name = "input"', 'input_name = "input"\narchive = "a.zip"\nmember = "x.onnx"')
    text = text.replace("/weights/r.onnx", "/other/a.zip")
    with pytest.raises(ManifestError, match=r"archive 'a\.zip' is downloaded from .* one archive, one URL"):
        parse_manifest(text)


def test_a_missing_or_broken_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model manifest not found: .*nowhere\.toml"):
        load_manifest(tmp_path / "nowhere.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("schema = [\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(broken)


def test_an_unknown_pack_names_the_known_ones() -> None:
    with pytest.raises(ModelError) as caught:
        load_manifest().pack("buffalo_xl")
    assert "unknown model pack 'buffalo_xl'" in str(caught.value)
    assert "buffalo_l" in str(caught.value) and "scrfd500m-mbf128" in str(caught.value)


# --- the models directory ---------------------------------------------------------------------------------------


def test_the_configured_directory_wins_over_the_environment(tmp_path: Path) -> None:
    configured, env = tmp_path / "a", tmp_path / "b"
    configured.mkdir()
    env.mkdir()
    assert resolve_model_dir(configured, {MODEL_DIR_ENV: str(env)}) == configured
    assert resolve_model_dir(None, {MODEL_DIR_ENV: str(env)}) == env


def test_no_directory_tells_how_to_set_one() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model_dir(None, {})
    message = str(caught.value)
    assert "no models directory" in message
    for hint in (f"{MODEL_DIR_ENV}=", "models.dir", "rollcall models fetch PACK"):
        assert hint in message


def test_a_missing_directory_names_where_it_came_from(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(ModelError, match=rf"{re.escape(str(gone))} \(from {MODEL_DIR_ENV}\) does not exist"):
        resolve_model_dir(None, {MODEL_DIR_ENV: str(gone)})
    with pytest.raises(ModelError, match=r"\(from models.dir\) does not exist"):
        resolve_model_dir(gone, {})
    assert resolve_model_dir(gone, {}, must_exist=False) == gone
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ModelError, match="is not a folder"):
        resolve_model_dir(afile, {}, must_exist=False)


# --- helpers ----------------------------------------------------------------------------------------------------


def test_a_mirror_replaces_scheme_and_host_and_keeps_the_path() -> None:
    url = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
    assert mirror_url(url, None) == url
    assert mirror_url(url, "http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
    )
    assert mirror_url(url, "https://mirror.lan/models/") == (
        "https://mirror.lan/models/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
    )
    with pytest.raises(ModelError, match="must look like"):
        mirror_url(url, "mirror.lan")


def test_the_progress_bar_shows_bytes_percent_and_rate() -> None:
    stream = io.StringIO()
    clock = iter([0.0, 1.0, 2.0])
    bar = Progress(unit="bytes", stream=stream, clock=lambda: next(clock), tty=False, width=10)
    bar("det.onnx", 0, 4_000_000)
    bar("det.onnx", 2_000_000, 4_000_000)
    bar("det.onnx", 4_000_000, 4_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("det.onnx  [..........]   0%  0 B / 4.0 MB")
    assert lines[1] == "det.onnx  [#####.....]  50%  2.0 MB / 4.0 MB  2.0 MB/s"
    assert lines[2] == "det.onnx  [##########] 100%  4.0 MB / 4.0 MB  2.0 MB/s"


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    stream = io.StringIO()
    times = iter([0.0, 0.01, 0.5, 1.0])
    bar = Progress(unit="bytes", stream=stream, clock=lambda: next(times), tty=True, interval_s=0.1)
    for done in (0, 10, 50, 100):
        bar("x.onnx", done, 100)
    out = stream.getvalue()
    assert out.count("\r") == 3, "the update 10 ms after the first is skipped"
    assert out.endswith("100 B / 100 B  100 B/s\n")


# --- the commands, against the real models directory ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollcall")
    add_models_commands(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    result: int = args.handler(args)
    return result


def test_models_list_shows_packs_files_licences_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = real_model_dir()
    assert _run(["models", "list", "--dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert f"models directory: {model_dir} (from --dir)" in out
    assert "scrfd500m-mbf128 (default):" in out and "buffalo_l:" in out
    assert re.search(r"detector\s+det_500m\.onnx\s+2\.5 MB\s+ok", out)
    assert re.search(r"recogniser\s+w600k_r50\.onnx\s+size \?\s+missing", out)
    assert "non-commercial research use only" in out


def test_models_list_without_a_directory_still_lists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    assert _run(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "none usable" in out and MODEL_DIR_ENV in out
    assert re.search(r"detector\s+det_500m\.onnx\s+2\.5 MB\s+-", out)


def test_models_verify_passes_the_default_and_fails_buffalo_l(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(real_model_dir()))
    assert _run(["models", "verify"]) == 0
    assert "scrfd500m-mbf128:" in capsys.readouterr().out
    assert _run(["models", "verify", "yunet-mbf128"]) == 0
    capsys.readouterr()
    assert _run(["models", "verify", "buffalo_l"]) == 2
    captured = capsys.readouterr()
    assert "det_10g.onnx" in captured.out and "w600k_r50.onnx" in captured.out and "missing" in captured.out
    assert "rollcall models fetch buffalo_l" in captured.err
    assert _run(["models", "verify", "--all"]) == 2
    assert "2 of 5 packs not usable" in capsys.readouterr().err


def test_models_verify_reads_the_pack_and_directory_from_an_edge_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = real_model_dir()
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    config = tmp_path / "edge.toml"
    config.write_text(f'[device]\nid = "door-1"\n[models]\ndir = "{model_dir}"\npack = "buffalo_sc"\n')
    assert _run(["models", "verify", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "buffalo_sc:" in captured.out and "w600k_mbf.onnx" in captured.out
    assert f"models.dir in {config}" in captured.out


def test_models_verify_without_a_directory_exits_2_with_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    assert _run(["models", "verify"]) == 2
    assert f"{MODEL_DIR_ENV}=" in capsys.readouterr().err
    assert _run(["models", "verify", "nope", "--dir", "/"]) == 2
    assert "unknown model pack 'nope'" in capsys.readouterr().err
