"""A whole site for the deployment tests: the test inventory, the door clip, ansible/site.yml against the targets."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy import targets as deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO_ROOT / "ansible"
EXAMPLE_INVENTORY = ANSIBLE_DIR / "inventories" / "example"
SITE_ID = "hq"
PREFIX = "rollcall"
HUB, DOOR, WORKSTATION = "hub", "door-1", "pc-1"
#: A second device on the door host (the same clip at 1 frame/s): "another door" for the ACL matrix.
SPARE_DOOR = "door-2"
DESKTOP_USER = "student"
#: Supervisors of the test site: an admin (enrols, asks), a viewer (refused people.remove), an operator, and one
#: whose certificate the tests revoke with revoke.yml.
SUPERVISORS = (
    {"name": "alice", "role": "admin"},
    {"name": "bob", "role": "viewer"},
    {"name": "olga", "role": "operator"},
    {"name": "rex", "role": "viewer"},
)
#: Where the door's clip lies on the door target (the unit can read it: not under /home, /root or /tmp).
CLIP_DIR = "/opt/rollcall-clips"
#: The people shown in the clip (a few, so the clip is short and every known one visits in it).
CLIP_PEOPLE = ("Angelina_Jolie", "Barack_Obama", "Jennifer_Aniston", "Katy_Perry", "Mark_Zuckerberg")


@dataclass(frozen=True)
class Site:
    """A test site on three targets: its inventory, CA folder and broker port."""

    inventory: Path
    pki: Path
    broker_port: int
    clip_truth: Path
    enrolment: dict[str, list[Path]]

    def cert(self, identity: str) -> tuple[Path, Path]:
        """The certificate and key the site CA issued to `identity` (on the controller)."""
        return self.pki / "issued" / f"{identity}.crt", self.pki / "issued" / f"{identity}.key"

    @property
    def ca(self) -> Path:
        """The site CA's certificate."""
        return self.pki / "ca.crt"


def make_clip(faces_dir: Path, out_dir: Path) -> tuple[Path, Path, dict[str, list[Path]]]:
    """A short door clip of a few people from `faces_dir` (ground truth and enrolment photos with it)."""
    from rollcall.tools.doorclip import generate_door_clip

    people = out_dir / "people"
    people.mkdir(parents=True, exist_ok=True)
    for name in CLIP_PEOPLE:
        link = people / name
        if not link.exists():
            link.symlink_to(faces_dir / name)
    return generate_door_clip(
        people,
        out_dir / "clip",
        seed=13,
        duration_s=40.0,
        fps=8,
        width=960,
        height=540,
        enrol_photos_per_person=2,
        stranger_share=0.2,
    )


def inventory_vars(
    *, wheelhouse: Path, model_dir: Path, broker_port: int, clip_name: str, version: str
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]], dict[str, Any]]:
    """Groups, host vars and `all` vars of the test site, shaped like ansible/inventories/example/."""
    groups = {"rollcall_hub": [HUB], "rollcall_doors": [DOOR], "rollcall_workstations": [WORKSTATION]}
    host_vars: dict[str, dict[str, Any]] = {
        DOOR: {
            "rollcall_door_devices": [
                {
                    "id": DOOR,
                    "name": "Front door",
                    "role": "entrance",
                    "camera": f"{CLIP_DIR}/{clip_name}",
                    "loop": True,
                    "realtime": True,
                    "width": 960,
                    "height": 540,
                    "fps": 8,
                    "threads": 1,
                },
                {
                    "id": SPARE_DOOR,
                    "name": "Back door",
                    "role": "exit",
                    "camera": f"{CLIP_DIR}/{clip_name}",
                    "loop": True,
                    "realtime": True,
                    "width": 960,
                    "height": 540,
                    "fps": 1,
                    "threads": 1,
                },
            ],
        },
        WORKSTATION: {"rollcall_agent_id": WORKSTATION, "rollcall_agent_user": DESKTOP_USER},
    }
    all_vars: dict[str, Any] = {
        "rollcall_site": SITE_ID,
        "rollcall_topic_prefix": PREFIX,
        "rollcall_timezone": "UTC",
        "rollcall_version": version,
        "rollcall_wheelhouse": str(wheelhouse),
        # Clients reach the broker as `hub` (every target's /etc/hosts); the controller's tests as 127.0.0.1.
        "rollcall_broker_address": HUB,
        "rollcall_broker_port": broker_port,
        "rollcall_ca_server_sans": [f"DNS:{HUB}", "IP:127.0.0.1"],
        "rollcall_model_src": str(model_dir),
        "rollcall_model_pack": "scrfd500m-mbf128",
        "rollcall_supervisors": list(SUPERVISORS),
        # The targets have no internet: their rootfs holds every Debian package the roles would install.
        "rollcall_install_packages_from_apt": False,
        "rollcall_broker_install_packages": False,
        "rollcall_door_install_packages": False,
        "rollcall_agent_install_packages": False,
        "rollcall_door_online_timeout_s": 90,
    }
    return groups, host_vars, all_vars


def write_site_inventory(
    targets: deploy.TargetSet,
    folder: Path,
    *,
    wheelhouse: Path,
    model_dir: Path,
    broker_port: int,
    clip_name: str,
    version: str,
) -> Path:
    """The test inventory in `folder` (hosts.yml and group_vars/all.yml); the CA goes to `folder/pki`."""
    groups, host_vars, all_vars = inventory_vars(
        wheelhouse=wheelhouse, model_dir=model_dir, broker_port=broker_port, clip_name=clip_name, version=version
    )
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with the deploy extra (ansible)

    example_groups = yaml.safe_load((EXAMPLE_INVENTORY / "hosts.yml").read_text())["all"]["children"]
    if set(groups) != set(example_groups):
        raise AssertionError(f"the example inventory's groups changed: {sorted(example_groups)}; update this test")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "group_vars").mkdir(exist_ok=True)
    # The example's site-wide settings (its CA folder next to the inventory, ...) with the test's values over them.
    example = yaml.safe_load((EXAMPLE_INVENTORY / "group_vars" / "all.yml").read_text())
    (folder / "group_vars" / "all.yml").write_text(
        "# Written by tests/deploy/site.py: ansible/inventories/example/group_vars/all.yml with the test's values.\n"
        + deploy.to_yaml({**example, **all_vars})
    )
    return targets.write_inventory(folder / "hosts.yml", groups=groups, host_vars=host_vars)


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a default-callback run: per host, ok, changed, unreachable, failed, skipped, ..."""
    recap: dict[str, dict[str, int]] = {}
    lines = output.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        return recap
    for line in lines[start + 1 :]:
        if ":" not in line or "=" not in line:
            continue
        host, _, counts = line.partition(":")
        recap[host.strip()] = {
            key: int(value) for key, value in (item.split("=") for item in counts.split() if "=" in item)
        }
    return recap


def changed_tasks(output: str) -> list[str]:
    """`changed: [host]` lines with the task they belong to, from a default-callback run."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]")[0]
        elif line.startswith("changed: ["):
            found.append(f"{task}: {line}")
    return found


def ansible_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ansible-playbook from the tests (host key checks off, no colour)."""
    return {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        **(extra or {}),
    }


def tail(text: str, chars: int = 6000) -> str:
    """The end of a long output, for assertion messages."""
    return text[-chars:]


def wait_for(predicate: Any, timeout: float, interval: float = 1.0) -> Any:
    """Call `predicate` until it returns something truthy or `timeout` passes; the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a folder (following symlinks), replacing `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, symlinks=False)


def as_json(text: str) -> Any:
    """JSON from a command's output, or an AssertionError naming it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON: {text[-2000:]}") from exc


def names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The `name` of each mapping."""
    return [str(item["name"]) for item in items]
