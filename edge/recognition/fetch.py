"""Download of model packs: HTTPS with resume, retries and mirrors, zip members, sha256 checked before install."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from edge.protocol.files import fsync_dir
from edge.recognition.packs import MODEL_DIR_ENV, Manifest, ModelError, ModelFile, ModelPack, check_file, sha256_file

if TYPE_CHECKING:
    import urllib.request
    import zipfile

log = logging.getLogger(__name__)

BASE_URL_ENV = "ROLLCALL_MODEL_BASE_URL"
"""Environment variable naming a mirror: its scheme, host and path prefix replace those of every download URL."""
CHUNK_BYTES = 256 * 1024
USER_AGENT = "rollcall-models/1"

FetchAction = Literal["present", "downloaded", "extracted"]
DownloadProgress = Callable[[str, int, "int | None"], None]
"""``progress(name, bytes_done, bytes_total_or_None)``; ``bytes_done`` counts resumed bytes too."""


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
    job: _Download, *, progress: DownloadProgress | None, opener: Opener, timeout: float, allow_resume: bool
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
    progress: DownloadProgress | None,
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
    fsync_dir(target.parent)


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
    progress: DownloadProgress | None = None,
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
