"""The deployment harness itself: three targets boot, answer Ansible, run systemd units and install the wheelhouse."""

from __future__ import annotations

import re
import shlex
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy import targets as deploy
from tests.deploy.conftest import SITE_TARGETS, ansible_results, record_timing, run_ansible

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def inventory(site_targets: deploy.TargetSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of the three site targets, one group per role."""
    return site_targets.write_inventory(
        tmp_path_factory.mktemp("inventory") / "inventory.yml",
        groups={"hubs": ["hub"], "doors": ["door-1"], "workstations": ["pc-1"]},
        group_vars={"doors": {"rollcall_site": "hq"}},
    )


def test_three_targets_answer_an_ansible_ping(
    site_targets: deploy.TargetSet, ansible_bin: Path, inventory: Path
) -> None:
    run = run_ansible(
        ansible_bin, "ansible", "-i", str(inventory), "all", "-m", "ansible.builtin.ping", json_output=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    pings = ansible_results(run)
    assert {host: [result["ping"] for result in results] for host, results in pings.items()} == {
        name: ["pong"] for name in SITE_TARGETS
    }

    # A group reaches only its own host, and each target is its own machine: hostname and machine id.
    doors = run_ansible(
        ansible_bin,
        "ansible",
        "-i",
        str(inventory),
        "doors",
        "-m",
        "ansible.builtin.command",
        "-a",
        "hostname",
        json_output=True,
    )
    assert doors.returncode == 0, doors.stdout + doors.stderr
    assert {host: [result["stdout"] for result in results] for host, results in ansible_results(doors).items()} == {
        "door-1": ["door-1"]
    }
    identities = {name: site_targets[name].ssh("hostname; cat /etc/machine-id").stdout.split() for name in SITE_TARGETS}
    assert {name: found[0] for name, found in identities.items()} == {name: name for name in SITE_TARGETS}
    assert len({found[1] for found in identities.values()}) == len(SITE_TARGETS), identities
    # Facts: Ansible sees a bookworm machine managed by systemd (so its service and systemd modules work there), and
    # the group variables of the inventory arrive.
    facts = run_ansible(
        ansible_bin,
        "ansible",
        "-i",
        str(inventory),
        "door-1",
        "-m",
        "ansible.builtin.setup",
        "-a",
        "filter=ansible_service_mgr,ansible_distribution_release",
        json_output=True,
    )
    assert facts.returncode == 0, facts.stdout + facts.stderr
    gathered = ansible_results(facts)["door-1"][0]["ansible_facts"]
    assert (gathered["ansible_service_mgr"], gathered["ansible_distribution_release"]) == ("systemd", "bookworm")
    site = run_ansible(
        ansible_bin,
        "ansible",
        "-i",
        str(inventory),
        "doors",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "var=rollcall_site",
        json_output=True,
    )
    assert ansible_results(site)["door-1"][0]["rollcall_site"] == "hq"
    # Every target resolves every other target's name (all are the host's loopback; ports tell them apart).
    assert site_targets["door-1"].ssh("getent hosts hub").stdout.split()[0] == "127.0.0.1"


def test_a_hardened_notify_unit_starts_and_stops_in_a_target(
    site_targets: deploy.TargetSet, ansible_bin: Path, inventory: Path
) -> None:
    # The sandboxing an exposure of at most 2.0 needs (as for the hub and edge units) works inside a target.
    door = site_targets["door-1"]
    ready = (
        "import os, socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
        "s.connect(os.environ['NOTIFY_SOCKET']); open('/var/lib/probe/started', 'w').write('probe'); "
        "s.send(b'READY=1'); time.sleep(3600)"
    )
    unit = textwrap.dedent(
        f"""\
        [Unit]
        Description=deployment harness probe
        [Service]
        Type=notify
        ExecStart=/usr/bin/python3 -c "{ready}"
        WatchdogSec=60
        DynamicUser=true
        StateDirectory=probe
        UMask=0077
        NoNewPrivileges=true
        ProtectSystem=strict
        ProtectHome=true
        PrivateTmp=true
        PrivateDevices=true
        DevicePolicy=closed
        PrivateUsers=true
        ProtectKernelTunables=true
        ProtectKernelModules=true
        ProtectKernelLogs=true
        ProtectControlGroups=true
        ProtectClock=true
        ProtectHostname=true
        ProtectProc=invisible
        ProcSubset=pid
        RestrictNamespaces=true
        LockPersonality=true
        MemoryDenyWriteExecute=true
        RestrictRealtime=true
        RestrictSUIDSGID=true
        RemoveIPC=true
        CapabilityBoundingSet=
        SystemCallArchitectures=native
        SystemCallFilter=@system-service
        SystemCallFilter=~@privileged @resources
        RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
        IPAddressDeny=any
        IPAddressAllow=localhost
        """
    )
    door.ssh(f"cat > /etc/systemd/system/rollcall-probe.service <<'EOF'\n{unit}EOF\nsystemctl daemon-reload")
    # Started by Ansible's systemd module, which reports a change the first time and none the second.
    start = ("-m", "ansible.builtin.systemd_service", "-a", "name=rollcall-probe.service state=started")
    for changed in (True, False):
        run = run_ansible(ansible_bin, "ansible", "-i", str(inventory), "door-1", *start, json_output=True)
        assert run.returncode == 0, run.stdout + run.stderr
        assert ansible_results(run)["door-1"][0]["changed"] is changed
    assert door.ssh("systemctl is-active rollcall-probe.service").stdout.strip() == "active"
    main_pid = int(door.ssh("systemctl show -p MainPID --value rollcall-probe.service").stdout)
    assert main_pid > 0
    assert door.ssh("cat /var/lib/probe/started").stdout.strip() == "probe"
    security = door.ssh("systemd-analyze security --no-pager rollcall-probe.service").stdout
    exposure = re.search(r"Overall exposure level for rollcall-probe\.service: ([0-9.]+)", security)
    assert exposure is not None and float(exposure.group(1)) <= 2.0, security[-500:]
    door.ssh("systemctl stop rollcall-probe.service", timeout=60)
    stopped = door.ssh("systemctl is-active rollcall-probe.service", check=False)
    assert stopped.stdout.strip() == "inactive"
    # The unit ran only in this target: the others never heard of it.
    other = site_targets["hub"].ssh("systemctl cat rollcall-probe.service", check=False)
    assert other.returncode != 0


def test_a_lingering_users_manager_runs_a_user_unit(site_targets: deploy.TargetSet) -> None:
    # The workstation agent is a user unit: it needs a user's own systemd, kept running by lingering.
    pc = site_targets["pc-1"]
    pc.ssh("id student >/dev/null 2>&1 || useradd --create-home student")
    pc.ssh("loginctl enable-linger student")
    unit = (
        "[Service]\nType=notify\nNotifyAccess=all\nExecStart=/bin/sh -c 'systemd-notify --ready; exec sleep infinity'\n"
    )
    pc.ssh(
        "install -d -o student -g student ~student/.config ~student/.config/systemd ~student/.config/systemd/user && "
        f"printf %s {shlex.quote(unit)} > ~student/.config/systemd/user/probe.service"
    )
    deadline = time.monotonic() + 30
    while pc.ssh("systemctl is-active user@$(id -u student).service", check=False).stdout.strip() != "active":
        assert time.monotonic() < deadline, "the user's systemd did not start after enable-linger"
        time.sleep(0.5)
    pc.ssh("systemctl --user -M student@ daemon-reload && systemctl --user -M student@ start probe.service")
    assert pc.ssh("systemctl --user -M student@ is-active probe.service").stdout.strip() == "active"
    owner = pc.ssh("ps -o user= -p $(systemctl --user -M student@ show -p MainPID --value probe.service)")
    assert owner.stdout.strip() == "student"


def test_the_wheelhouse_installs_rollcall_offline_in_a_target(
    site_targets: deploy.TargetSet, wheelhouse: deploy.Wheelhouse
) -> None:
    hub = site_targets["hub"]
    started = time.monotonic()
    hub.put(wheelhouse.path, "/var/cache/rollcall-wheels")
    hub.ssh("python3 -m venv /opt/rollcall/test-venv", timeout=300)
    install = hub.ssh(
        "/opt/rollcall/test-venv/bin/pip install --quiet --no-index --find-links /var/cache/rollcall-wheels "
        f"'{wheelhouse.requirement('hub', 'tui')}'",
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    version = hub.ssh("/opt/rollcall/test-venv/bin/rollcall --version").stdout
    assert wheelhouse.rollcall_wheel.name.split("-")[1] in version
    # The heavy imports work against the target's own libraries (libGL, glib for OpenCV; onnxruntime).
    hub.ssh("/opt/rollcall/test-venv/bin/python -c 'import cv2, onnxruntime, textual, hub.service'", timeout=300)
    record_timing(f"offline install of rollcall[hub,tui] in a target: {time.monotonic() - started:.1f} s")


def test_a_target_halts_cleanly_on_sigterm_and_leaves_nothing(
    target_session: deploy.TargetSet, progress: Callable[[str], None]
) -> None:
    target_session.boot(["scratch"], progress=progress)
    scratch = target_session["scratch"]
    workdir, process = scratch.workdir, scratch.process
    assert process is not None and process.poll() is None
    started = time.monotonic()
    target_session.stop("scratch")
    assert scratch.halted_cleanly, f"systemd-nspawn exited {process.returncode}; console:\n{scratch.last_console}"
    assert "has been shut down" in scratch.last_console, scratch.last_console
    assert not workdir.exists(), "the target's root and folder are removed"
    assert not Path(f"/proc/{process.pid}").exists()
    record_timing(f"halt of one target on SIGTERM: {time.monotonic() - started:.1f} s")
