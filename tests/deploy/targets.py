"""Throwaway deployment targets: a cached Debian bookworm rootfs booted N times by systemd-nspawn, reached by SSH."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]

SUITE = "bookworm"
MIRROR = os.environ.get("ROLLCALL_DEPLOY_MIRROR", "http://deb.debian.org/debian")
DEFAULT_CACHE = Path("/var/cache/rollcall-deploy")
#: Bump when the post-install steps of `build_rootfs` change: the cache key includes it, so a new rootfs is built.
RECIPE_VERSION = 1

#: What debootstrap itself installs (the set known to boot under systemd-nspawn).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3")
#: Installed with apt inside the new rootfs, so that the Ansible roles find everything already there and the play
#: needs no internet. Add here what a role installs; the rootfs is rebuilt because the list is part of the cache key.
EXTRA_PACKAGES = (
    # Reaching the target and running Ansible modules on it.
    "openssh-server",
    "sudo",
    "acl",  # become_user to an unprivileged user (setfacl on Ansible's temporary files)
    "python3-apt",  # ansible.builtin.apt
    "python3-venv",  # the versioned virtualenvs under /opt/rollcall
    "python3-packaging",  # ansible.builtin.pip imports it on the target
    "python3-cryptography",  # community.crypto modules when they run on a target
    "ca-certificates",
    "openssl",
    "rsync",  # ansible.posix.synchronize
    "iproute2",  # network facts
    "procps",
    "libpam-systemd",
    "dbus-user-session",  # systemctl --user for the workstation agent's user unit
    # The broker and its identity plugin, compiled on the hub host.
    "mosquitto",
    "mosquitto-clients",
    "mosquitto-dev",
    "libmosquitto-dev",  # mosquitto.h, which the identity plugin includes
    "libssl-dev",
    "gcc",
    "libc6-dev",
    "make",
    # OpenCV's wheels (door devices, hub enrolment) and an X server for the workstation agent.
    "libgl1",
    "libglib2.0-0",
    "xvfb",
    "xauth",
)
#: Units of the rootfs that must not start by themselves in every target: the broker (the hub role enables it on
#: one target; the targets share the host's network, so three would fight over port 1883) and apt's timers.
DISABLED_UNITS = ("mosquitto.service",)
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service")

#: pyproject extras the wheelhouse holds wheels for.
WHEEL_EXTRAS = ("hub", "edge", "agent", "tui")

SSH_COMMON_ARGS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")


class DeployError(RuntimeError):
    """A step of the deployment harness failed; the message says which and where its log is."""


@dataclass(frozen=True)
class Built:
    """A cached artefact and how it was obtained."""

    path: Path
    seconds: float
    reused: bool


def cache_dir() -> Path:
    """The cache folder: $ROLLCALL_DEPLOY_CACHE, else /var/cache/rollcall-deploy."""
    configured = os.environ.get("ROLLCALL_DEPLOY_CACHE")
    return Path(configured).resolve() if configured else DEFAULT_CACHE


def preflight() -> list[str]:
    """What this machine lacks to run the deployment harness (empty when nothing)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the deployment targets need root (debootstrap, mount, systemd-nspawn)")
    tools = {
        "debootstrap": "debootstrap",
        "systemd-nspawn": "systemd-container",
        "ssh": "openssh-client",
        "ssh-keygen": "openssh-client",
    }
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing: apt-get install {package}")
    return problems


def _log(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), so two test sessions never build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: Sequence[str | Path], log: Path, *, timeout: float, env: Mapping[str, str] | None = None) -> None:
    """Run a build step with its output appended to `log`; a failure names the step and ends with the log's tail."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                [str(part) for part in command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=dict(env) if env is not None else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeployError(f"`{command[0]}` took more than {timeout:.0f} s; see {log}") from exc
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise DeployError(f"`{' '.join(map(str, command[:3]))} ...` failed with {done.returncode}; {log}:\n{tail}")


def _mounts_below(path: Path) -> list[Path]:
    """Mount points at or under `path` (from /proc/self/mountinfo), deepest first."""
    resolved = os.path.realpath(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space, and so on
        if point == resolved or point.startswith(resolved.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda mount: len(mount.parts), reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a file or folder, undoing mounts inside it first (an overlay root, an interrupted debootstrap's /proc).

    So the deletion never reaches into another file system.
    """
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        for mount in _mounts_below(path):
            _unmount(mount)
        if _mounts_below(path):
            raise DeployError(
                f"{path} still has mounts under it after umount; remove them by hand: {_mounts_below(path)}"
            )
        shutil.rmtree(path)


# --- the root file system ------------------------------------------------------------------------------------------


def rootfs_key() -> str:
    """What the rootfs is made of, hashed: the suite, the mirror, the package lists and the recipe version."""
    recipe = json.dumps([SUITE, MIRROR, BASE_PACKAGES, EXTRA_PACKAGES, DISABLED_UNITS, MASKED_UNITS, RECIPE_VERSION])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _systemd_link(root: Path, unit: str, *, mask: bool) -> None:
    """Disable (remove every enablement symlink of) or mask a unit inside `root` without running systemctl there."""
    etc = root / "etc/systemd/system"
    for wants in etc.glob("*.wants"):
        _remove_tree(wants / unit)
    if mask:
        target = etc / unit
        _remove_tree(target)
        target.symlink_to("/dev/null")


def build_rootfs(cache: Path, progress: Progress | None = None) -> Built:
    """The Debian bookworm rootfs for the targets, built once into `cache` and reused while its recipe is the same.

    It is built in a temporary folder and renamed into place when complete, under a lock, so a half-built rootfs is
    never used (an interrupted build leaves only a `.tmp` folder, removed by the next build).
    """
    final = cache / f"rootfs-{rootfs_key()}"
    started = time.monotonic()
    if final.is_dir():
        return Built(final, time.monotonic() - started, reused=True)
    with _locked(cache / "rootfs.lock"):
        if final.is_dir():  # another session built it while this one waited for the lock
            return Built(final, time.monotonic() - started, reused=True)
        for stale in cache.glob("rootfs-*.tmp"):
            _log(progress, f"removing an unfinished rootfs build: {stale}")
            _remove_tree(stale)
        building = cache / f"{final.name}.tmp"
        log = cache / f"{final.name}.log"
        log.write_text("")
        _log(progress, f"building the targets' rootfs ({SUITE}, {len(EXTRA_PACKAGES)} extra packages) into {final}")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                building,
                MIRROR,
            ],
            log,
            timeout=1800,
        )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "SYSTEMD_NSPAWN_LOCK": "0"}
        # apt inside the new root through nspawn (not chroot): /proc, /dev and /sys are set up and torn down for it.
        policy = building / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")  # no service starts while packages are installed
        policy.chmod(0o755)
        nspawn: list[str | Path] = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", building]
        _run([*nspawn, "apt-get", "update", "-qq"], log, timeout=600, env=env)
        _run(
            [*nspawn, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *EXTRA_PACKAGES],
            log,
            timeout=1800,
            env=env,
        )
        _run([*nspawn, "apt-get", "clean"], log, timeout=120, env=env)
        policy.unlink()
        _configure_rootfs(building)
        # Remove any older rootfs builds (different recipes) that no live session is using.
        if not _live_sessions(cache):
            for old in cache.glob("rootfs-*"):
                if old.is_dir() and not old.name.endswith(".tmp"):
                    _log(progress, f"removing an older rootfs: {old}")
                    _remove_tree(old)
        building.rename(final)
    return Built(final, time.monotonic() - started, reused=False)


def _configure_rootfs(root: Path) -> None:
    """What every target shares: no host keys or machine id yet (each target gets its own), sshd for root by key."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    _remove_tree(root / "var/lib/dbus/machine-id")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")
    # nspawn may refuse to set the login uid (no CAP_AUDIT_CONTROL): PAM must not refuse the SSH session for it.
    pam = root / "etc/pam.d/sshd"
    pam.write_text(
        pam.read_text().replace("session    required     pam_loginuid.so", "session optional pam_loginuid.so")
    )
    for unit in DISABLED_UNITS:
        _systemd_link(root, unit, mask=False)
    for unit in MASKED_UNITS:
        _systemd_link(root, unit, mask=True)
    default = root / "etc/systemd/system/default.target"
    _remove_tree(default)
    default.symlink_to("/lib/systemd/system/multi-user.target")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)


# --- the wheelhouse ------------------------------------------------------------------------------------------------


def _project(repo: Path) -> dict[str, Any]:
    with (repo / "pyproject.toml").open("rb") as handle:
        project: dict[str, Any] = tomllib.load(handle)["project"]
    return project


def requirements(repo: Path, extras: Sequence[str] = WHEEL_EXTRAS) -> list[str]:
    """The requirements of rollcall with `extras`, from pyproject.toml (its `rollcall[...]` references expanded)."""
    project = _project(repo)
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise DeployError(f"pyproject.toml has no optional-dependencies group {extra!r}")
        for requirement in optional[extra]:
            if requirement.startswith("rollcall["):
                pending.extend(part.strip() for part in requirement[len("rollcall[") :].split("]")[0].split(","))
            elif requirement not in found:
                found.append(requirement)
    return sorted(found)


def wheelhouse_key(repo: Path, extras: Sequence[str] = WHEEL_EXTRAS) -> str:
    """The requirements of `extras` and this Python and platform, hashed (not rollcall's own sources)."""
    recipe = json.dumps(
        [
            requirements(repo, extras),
            sys.version_info[:2],
            sys.platform,
            os.uname().machine,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _copy_sources(repo: Path, dest: Path, version: str | None) -> None:
    """The working tree's files (tracked and untracked, not ignored) into `dest`, so a build leaves the repo clean."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if not source.is_file():  # deleted in the working tree but still in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if version is not None:
        pyproject = dest / "pyproject.toml"
        current = _project(repo)["version"]
        text = pyproject.read_text()
        replaced = text.replace(f'version = "{current}"', f'version = "{version}"', 1)
        if replaced == text:
            raise DeployError(f'pyproject.toml has no line `version = "{current}"` to set {version} in')
        pyproject.write_text(replaced)


def build_rollcall_wheel(
    repo: Path,
    dest: Path,
    *,
    version: str | None = None,
    edit: Callable[[Path], None] | None = None,
    timeout: float = 600,
) -> Path:
    """A wheel of this working tree (optionally under another version, e.g. to test upgrades) into `dest`.

    `edit` is called with the copy of the sources before the build (a deliberately broken release for a test); the
    checkout itself is never changed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rollcall-src-") as scratch:
        sources = Path(scratch) / "src"
        _copy_sources(repo, sources, version)
        if edit is not None:
            edit(sources)
        log = Path(scratch) / "wheel.log"
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dest, sources],
            log,
            timeout=timeout,
        )
    wanted = version or _project(repo)["version"]
    wheels = sorted(dest.glob(f"rollcall-{wanted}-*.whl"))
    if not wheels:
        raise DeployError(f"pip built no rollcall-{wanted} wheel into {dest}")
    return wheels[-1]


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels that installs rollcall and its extras offline: `pip install --no-index --find-links`."""

    path: Path
    rollcall_wheel: Path
    dependencies: Built
    seconds: float

    def requirement(self, *extras: str) -> str:
        """`rollcall[hub,...]==<version>` for pip on a target."""
        version = self.rollcall_wheel.name.split("-")[1]
        return f"rollcall[{','.join(extras)}]=={version}" if extras else f"rollcall=={version}"


def build_dependency_wheels(
    repo: Path, cache: Path, extras: Sequence[str] = WHEEL_EXTRAS, progress: Progress | None = None
) -> Built:
    """Wheels of every dependency of rollcall's `extras`, from the pip cache or the index, kept in `cache`."""
    final = cache / f"wheels-{wheelhouse_key(repo, extras)}"
    started = time.monotonic()
    if final.is_dir():
        return Built(final, time.monotonic() - started, reused=True)
    with _locked(cache / "wheels.lock"):
        if final.is_dir():
            return Built(final, time.monotonic() - started, reused=True)
        building = cache / f"{final.name}.tmp"
        _remove_tree(building)
        building.mkdir(parents=True)
        log = cache / f"{final.name}.log"
        log.write_text("")
        _log(progress, f"building the wheelhouse for rollcall[{','.join(extras)}] into {final}")
        with tempfile.TemporaryDirectory(prefix="rollcall-src-") as scratch:
            sources = Path(scratch) / "src"
            _copy_sources(repo, sources, None)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--prefer-binary",
                    "--wheel-dir",
                    building,
                    f"{sources}[{','.join(extras)}]",
                ],
                log,
                timeout=1800,
            )
        for own in building.glob("rollcall-*.whl"):  # rollcall itself is built afresh each session
            own.unlink()
        for old in cache.glob("wheels-*"):  # sessions hold hard links, so older sets can go at once
            if old.is_dir() and old != building:
                _log(progress, f"removing an older set of wheels: {old}")
                _remove_tree(old)
        building.rename(final)
    return Built(final, time.monotonic() - started, reused=False)


def build_wheelhouse(
    repo: Path, cache: Path, dest: Path, extras: Sequence[str] = WHEEL_EXTRAS, progress: Progress | None = None
) -> Wheelhouse:
    """`dest` filled with the cached dependency wheels (hard links) and a fresh wheel of this working tree."""
    started = time.monotonic()
    dependencies = build_dependency_wheels(repo, cache, extras, progress)
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in dependencies.path.iterdir():
        target = dest / wheel.name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
    own = build_rollcall_wheel(repo, dest)
    return Wheelhouse(dest, own, dependencies, time.monotonic() - started)


# --- booted targets ------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), to tell it from a later one with the same id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _container_init(nspawn_pid: int) -> int | None:
    """The host pid of the container's PID 1: the child of nspawn in another pid namespace."""
    try:
        own_ns = os.readlink(f"/proc/{nspawn_pid}/ns/pid")
    except OSError:
        return None
    for task in Path(f"/proc/{nspawn_pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        for child in children:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child}/ns/pid") != own_ns:
                    return int(child)
    return None


def _kill_recorded(pid_file: Path) -> None:
    """SIGKILL the process recorded as `pid start-time` in `pid_file` if it is still that process."""
    try:
        pid_text, start = pid_file.read_text().split()
    except (OSError, ValueError):
        return
    pid = int(pid_text)
    if _start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _start_time(pid) == start and time.monotonic() < deadline:
            time.sleep(0.1)


def _unmount(path: Path) -> None:
    """Unmount `path`; lazily when it is busy (the mount goes once its last user does)."""
    done = subprocess.run(["umount", str(path)], capture_output=True, check=False, timeout=60)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=60)


def _halt_recorded(workdir: Path, grace: float = 30) -> None:
    """SIGTERM a target's nspawn (recorded in `nspawn.pid`) if it still runs, and wait up to `grace` for the halt."""
    try:
        pid_text, start = (workdir / "nspawn.pid").read_text().split()
    except (OSError, ValueError):
        return
    pid = int(pid_text)
    if _start_time(pid) != start:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _start_time(pid) == start and time.monotonic() < deadline:
        time.sleep(0.2)


def _remove_target_dir(workdir: Path) -> None:
    """Kill what the target left running (recorded pids), unmount its root and delete its folder."""
    _kill_recorded(workdir / "init.pid")
    _kill_recorded(workdir / "nspawn.pid")
    _remove_tree(workdir)


def _live_sessions(cache: Path) -> list[Path]:
    sessions = []
    for owner in (cache / "targets").glob("*/owner.pid"):
        pid_text, _, start = owner.read_text().partition(" ")
        if pid_text.isdigit() and _start_time(int(pid_text)) == start.strip():
            sessions.append(owner.parent)
    return sessions


def reap_stale_targets(cache: Path, progress: Progress | None = None) -> None:
    """Remove targets left behind by a test session that died without cleaning up (SIGKILL, power loss)."""
    live = set(_live_sessions(cache))
    for session in (cache / "targets").glob("*"):
        if session in live or not session.is_dir():
            continue
        _log(progress, f"removing targets left by a dead session: {session}")
        workdirs = [workdir for workdir in session.iterdir() if workdir.is_dir()]
        for workdir in workdirs:  # a clean halt where the container still runs (its nspawn outlived the session)
            _halt_recorded(workdir)
        for workdir in workdirs:
            _remove_target_dir(workdir)
        _remove_tree(session)


@dataclass
class Target:
    """One booted container: its name (also its hostname), SSH port, root folder on the host and nspawn process."""

    name: str
    port: int
    workdir: Path
    key: Path
    machine_id: str
    process: subprocess.Popen[bytes] | None = None
    halted_cleanly: bool | None = None
    #: The end of the console log, kept when the target is stopped (its folder is removed).
    last_console: str = ""

    @property
    def root(self) -> Path:
        """The container's root file system as seen from the host."""
        return self.workdir / "root"

    @property
    def console_log(self) -> Path:
        """The container's console (boot messages), written by nspawn."""
        return self.workdir / "console.log"

    def ssh_command(self, command: str) -> list[str]:
        """The `ssh` command line that runs `command` as root on this target."""
        return [
            "ssh",
            *SSH_COMMON_ARGS,
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "root@127.0.0.1",
            command,
        ]

    def ssh(self, command: str, *, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the target over SSH; with `check`, a failure raises with its output."""
        done = subprocess.run(self.ssh_command(command), capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise DeployError(
                f"{self.name}: `{command}` exited {done.returncode}\nstdout: {done.stdout[-2000:]}\n"
                f"stderr: {done.stderr[-2000:]}"
            )
        return done

    def put(self, source: Path, dest: str) -> Path:
        """Copy a host file or folder to `dest` (an absolute path, not under /tmp or /run) inside the running target.

        It writes straight into the target's root from the host, much faster than scp for a wheelhouse.
        """
        if not dest.startswith("/") or dest.split("/")[1] in {"tmp", "run", "proc", "sys", "dev"}:
            raise ValueError(f"put() needs an absolute path outside /tmp, /run and the API file systems, not {dest}")
        target = self.root / dest.lstrip("/")
        # An absolute symlink inside the target (/var/run -> /run) would lead the host's copy out of the target.
        if not Path(os.path.realpath(target.parent)).is_relative_to(self.root.resolve()):
            raise ValueError(f"{dest} leads out of the target's root through a symbolic link; copy to its real path")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        return target

    def console_tail(self, chars: int = 3000) -> str:
        """The end of the console log, for error messages."""
        try:
            return self.console_log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no console log)"


def _prepare_root(target: Target, rootfs: Path, names: Sequence[str], pubkey: str) -> str:
    """Mount an overlay of `rootfs` as the target's root (or copy it) and give it its identity and sshd. Returns how."""
    upper, work, root = target.workdir / "upper", target.workdir / "work", target.root
    for folder in (upper, work, root):
        folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(root)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    how = "overlay"
    if mounted.returncode != 0:  # no overlayfs here: a copy (cheap on a file system with reflinks)
        subprocess.run(["cp", "-a", "--reflink=auto", f"{rootfs}/.", str(root)], check=True, timeout=900)
        how = "copy"
    (root / "etc/machine-id").write_text(target.machine_id + "\n")
    (root / "etc/hostname").write_text(target.name + "\n")
    (root / "etc/hosts").write_text(
        "# rollcall deployment targets share the host's network: every target name is this loopback.\n"
        f"127.0.0.1\tlocalhost {' '.join(names)}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    host_key = root / "etc/ssh/ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{target.name}", "-f", str(host_key)],
        check=True,
        timeout=60,
    )
    (root / "etc/ssh/sshd_config.d/rollcall-deploy.conf").write_text(
        "# Written by tests/deploy/targets.py: the targets share the host's network, so each has its own port.\n"
        f"Port {target.port}\n"
        "ListenAddress 127.0.0.1\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
        "MaxStartups 64\n"
        "MaxSessions 64\n"
    )
    authorized = root / "root/.ssh/authorized_keys"
    authorized.parent.mkdir(mode=0o700, exist_ok=True)
    authorized.write_text(pubkey)
    authorized.chmod(0o600)
    return how


@dataclass
class TargetSet:
    """Booted targets of one test session, their SSH key and Ansible inventory; `close()` halts and removes them."""

    cache: Path
    rootfs: Path
    session_dir: Path
    key: Path
    targets: dict[str, Target] = field(default_factory=dict)
    boot_seconds: float = 0.0
    booted: int = 0
    root_method: str = ""

    def __getitem__(self, name: str) -> Target:
        return self.targets[name]

    def boot(self, names: Sequence[str], *, timeout: float = 180, progress: Progress | None = None) -> None:
        """Boot one target per name at once and wait until each says `running` or `degraded` over SSH."""
        duplicates = {name for name in names if list(names).count(name) > 1} | set(names) & set(self.targets)
        if duplicates:
            raise ValueError(f"target names must be distinct: {sorted(duplicates)}")
        started = time.monotonic()
        pubkey = self.key.with_suffix(".pub").read_text()
        every_name = [*self.targets, *names]
        new = []
        for name in names:
            target = Target(
                name=name,
                port=free_port(),
                workdir=self.session_dir / name,
                key=self.key,
                machine_id=uuid.uuid4().hex,
            )
            self.targets[name] = target
            new.append(target)
            self.root_method = _prepare_root(target, self.rootfs, every_name, pubkey)
            self._start(target)
        _log(progress, f"booting {', '.join(names)} ({self.root_method} roots)")
        for target in new:
            self._wait_running(target, started + timeout)
        self.boot_seconds += time.monotonic() - started
        self.booted += len(new)

    def _start(self, target: Target) -> None:
        Path("/run/systemd/nspawn").mkdir(parents=True, exist_ok=True)
        command = [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--boot",
            "--directory",
            str(target.root),
            # Unique per session (nspawn keeps per-machine state under /run/systemd/nspawn); hostname = target name.
            f"--machine={target.name}-{self.session_dir.name}",
            f"--hostname={target.name}",
            "--link-journal=no",
            "--console=read-only",
        ]
        env = {**os.environ, "SYSTEMD_NSPAWN_LOCK": "0"}
        with target.console_log.open("wb") as console:
            target.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=env
            )
        (target.workdir / "nspawn.pid").write_text(f"{target.process.pid} {_start_time(target.process.pid)}")

    def _wait_running(self, target: Target, deadline: float) -> None:
        assert target.process is not None
        state = ""
        while time.monotonic() < deadline:
            if target.process.poll() is not None:
                raise DeployError(
                    f"{target.name}: systemd-nspawn exited {target.process.returncode} while booting; "
                    f"{target.console_log}:\n{target.console_tail()}"
                )
            init = _container_init(target.process.pid)
            if init is not None and not (target.workdir / "init.pid").exists():
                (target.workdir / "init.pid").write_text(f"{init} {_start_time(init)}")
            remaining = max(1.0, deadline - time.monotonic())
            try:
                done = target.ssh("systemctl is-system-running --wait", timeout=remaining, check=False)
            except subprocess.TimeoutExpired:
                break
            state = done.stdout.strip()
            if state in {"running", "degraded"}:
                return
            if done.returncode != 255:  # sshd answered but the system is in another state (stopping, maintenance)
                raise DeployError(f"{target.name}: systemctl is-system-running says {state!r}: {done.stderr}")
            time.sleep(0.5)
        raise DeployError(
            f"{target.name}: not up over SSH on port {target.port} in time (last state {state!r}); "
            f"{target.console_log}:\n{target.console_tail()}"
        )

    def failed_units(self) -> dict[str, list[str]]:
        """Per target, the units systemd lists as failed (a `degraded` boot names them here)."""
        failed = {}
        for name, target in self.targets.items():
            listed = target.ssh("systemctl list-units --failed --plain --no-legend", check=False).stdout
            failed[name] = [line.split()[0] for line in listed.splitlines() if line.strip()]
        return failed

    def stop(self, name: str, *, grace: float = 60) -> None:
        """Halt one target with SIGTERM (nspawn asks its systemd to power off), SIGKILL after `grace`; remove it."""
        target = self.targets.pop(name)
        process = target.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
                target.halted_cleanly = process.returncode == 0
            except subprocess.TimeoutExpired:
                target.halted_cleanly = False
                _kill_recorded(target.workdir / "init.pid")
                process.kill()
                process.wait(timeout=30)
        target.last_console = target.console_tail()
        _remove_target_dir(target.workdir)

    def close(self) -> None:
        """Halt every target at once (SIGTERM to all, then wait), remove their roots and the session folder."""
        for target in self.targets.values():
            if target.process is not None and target.process.poll() is None:
                target.process.send_signal(signal.SIGTERM)
        for name in list(self.targets):
            self.stop(name)
        _remove_tree(self.session_dir)

    def write_inventory(
        self,
        path: Path,
        groups: Mapping[str, Sequence[str]] | None = None,
        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
        group_vars: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """An Ansible inventory (YAML) that reaches every target over SSH as root; groups default to none."""
        host_vars = host_vars or {}
        hosts = {
            name: {
                "ansible_host": "127.0.0.1",
                "ansible_port": target.port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": " ".join(SSH_COMMON_ARGS),
                "ansible_python_interpreter": "/usr/bin/python3",
                **host_vars.get(name, {}),
            }
            for name, target in self.targets.items()
        }
        children = {
            group: {
                "hosts": {member: None for member in members},
                **({"vars": dict(group_vars[group])} if group_vars and group in group_vars else {}),
            }
            for group, members in (groups or {}).items()
        }
        inventory: dict[str, Any] = {"all": {"hosts": hosts}}
        if children:
            inventory["all"]["children"] = children
        path.write_text(
            "# Written by tests/deploy/targets.py for this test session's throwaway targets.\n" + to_yaml(inventory)
        )
        return path


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for nested mappings; lists and scalars are written as JSON, which YAML reads as is."""
    pad = "  " * indent
    if not isinstance(value, Mapping) or not value:
        return f"{pad}{json.dumps(value)}\n"
    lines = []
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            lines.append(f"{pad}{json.dumps(str(key))}:\n{to_yaml(item, indent + 1)}")
        else:
            lines.append(f"{pad}{json.dumps(str(key))}: {json.dumps(item)}\n")
    return "".join(lines)


@contextlib.contextmanager
def target_session(cache: Path, rootfs: Path, key_dir: Path, progress: Progress | None = None) -> Iterator[TargetSet]:
    """A session of targets: its folder under `cache/targets`, a fresh SSH key; every target removed at the end."""
    reap_stale_targets(cache, progress)
    session_dir = cache / "targets" / uuid.uuid4().hex[:8]
    session_dir.mkdir(parents=True)
    (session_dir / "owner.pid").write_text(f"{os.getpid()} {_start_time(os.getpid())}")
    key = key_dir / "id_ed25519"
    if not key.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rollcall-deploy-tests", "-f", str(key)],
            check=True,
            timeout=60,
        )
    targets = TargetSet(cache=cache, rootfs=rootfs, session_dir=session_dir, key=key)
    try:
        yield targets
    finally:
        targets.close()
