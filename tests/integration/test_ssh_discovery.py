"""Discovery over SSH against the real loopback sshd, and libvirt over that SSH connection."""

import json
import os
import socket
import subprocess
import tempfile
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from ovmweb.hypervisor import connections
from ovmweb.inventory.models import Server
from ovmweb.inventory.services import pools, servers, vms
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import free_port, make_repository, start_sshd, stop_process, upload_guest_iso, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WRONG_FINGERPRINT = "SHA256:" + "A" * 43


def _discover(user, access, **overrides):
    params = {
        "hostname": "127.0.0.1",
        "transport": "ssh",
        "ssh_port": access["port"],
        "ssh_user": "root",
        "private_key": access["private_key"],
        "host_key_fingerprint": access["fingerprint"],
        "name": "over-ssh",
    }
    params.update(overrides)
    job = servers.server_discover(user=user, **params)
    run_pending_jobs()
    job.refresh_from_db()
    return job


def test_discover_over_ssh_and_boot_the_tiny_guest(admin_user, ssh_access, real_hypervisor, tmp_path, cleanup_all):
    pool = pools.server_pool_create(user=admin_user, name=f"ssh-{uuid.uuid4().hex[:6]}")
    job = _discover(admin_user, ssh_access, server_pool=pool)
    assert job.status == "SUCCESS", job.error
    server = Server.objects.get(name="over-ssh")
    assert server.status == "RUNNING"
    assert server.domain_types == ["qemu"]
    assert server.cpu_vendor and server.cpu_cores > 0 and server.memory_mib > 0
    assert server.libvirt_version.startswith("9.") and server.qemu_version
    assert server.host_key.startswith("ssh-ed25519 ")

    # The management connection is libvirt over the pinned SSH, not qemu:///system.
    driver = connections.driver_for(server)
    assert driver.uri.startswith("qemu+ssh://root@127.0.0.1:")
    assert isinstance(driver.list_domains(), list)

    # Credentials: encrypted at rest, never shown by the API.
    key_body = ssh_access["private_key"].splitlines()[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials_encrypted FROM inventory_server WHERE id = %s", [server.pk])
        stored = cursor.fetchone()[0]
    assert stored and key_body not in stored and "PRIVATE KEY" not in stored
    client = APIClient()
    client.force_authenticate(admin_user)
    body = client.get(f"/api/v1/servers/{server.pk}/").content.decode()
    assert '"status":"RUNNING"' in body.replace(" ", "")
    assert key_body not in body and "credentials" not in body and stored not in body

    # A VM on the SSH-discovered server boots through the services and jobs.
    repo = make_repository(user=admin_user, server=server, pool=pool, path=tmp_path / "repo")
    iso = upload_guest_iso(user=admin_user, repo=repo)
    vm = vms.vm_create(
        user=admin_user,
        name="over-ssh-vm",
        server_pool=pool,
        repository=repo,
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": iso},
        boot_order=["cdrom"],
    )
    # Its configuration copy went into the repository over SFTP.
    vm_json = tmp_path / "repo" / "VirtualMachines" / str(vm.uuid) / "vm.json"
    assert wait_for(vm_json.exists, 15)
    config = json.loads(vm_json.read_text())
    assert config["name"] == "over-ssh-vm" and config["uuid"] == str(vm.uuid)
    vms.vm_action(vm=vm, action="start", user=admin_user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING" and vm.server_id == server.pk
    assert str(vm.uuid) in {d.uuid for d in driver.list_domains() if d.state.value == "running"}
    sock = socket.create_connection(("127.0.0.1", vm.serial_port), timeout=120)
    buffer = b""
    while b"ovmweb tiny guest" not in buffer:
        chunk = sock.recv(4096)
        assert chunk, buffer[-500:]
        buffer += chunk
    sock.close()
    vms.vm_action(vm=vm, action="kill", user=admin_user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "STOPPED"
    assert driver.domain_info(str(vm.uuid)).state.value == "shutoff"


def test_wrong_fingerprint_fails_with_the_offered_one(admin_user, ssh_access, real_hypervisor):
    job = _discover(admin_user, ssh_access, host_key_fingerprint=WRONG_FINGERPRINT)
    assert job.status == "FAILURE"
    assert ssh_access["fingerprint"].rstrip("=") in job.error
    assert "Host key verification failed" in job.error
    assert not Server.objects.filter(status="RUNNING").exists()
    assert not Server.objects.filter(name="over-ssh").exists()  # never discovered: nothing kept
    assert Event.objects.filter(type="server.discovery_failed", severity="ERROR").exists()


def test_wrong_key_fails_clearly(admin_user, ssh_access, real_hypervisor):
    job = _discover(admin_user, ssh_access, private_key=_new_ed25519_key())
    assert job.status == "FAILURE"
    assert "authentication" in job.error.lower() and "failed" in job.error
    assert not Server.objects.filter(name="over-ssh").exists()


def test_wrong_password_fails_clearly(admin_user, ssh_access, real_hypervisor):
    job = _discover(admin_user, ssh_access, private_key=None, password="not-the-password")
    assert job.status == "FAILURE"
    assert "authentication" in job.error.lower()
    assert "not-the-password" not in job.error
    assert not Server.objects.filter(name="over-ssh").exists()


def test_unreachable_host_fails_clearly(admin_user, ssh_access, real_hypervisor):
    job = _discover(admin_user, ssh_access, ssh_port=free_port())
    assert job.status == "FAILURE"
    assert "Connection refused" in job.error or "failed" in job.error
    assert "127.0.0.1" in job.error
    assert not Server.objects.filter(name="over-ssh").exists()


def test_host_without_libvirt_fails_clearly(admin_user, ssh_access, real_hypervisor, tmp_path):
    # A second sshd in its own mount namespace where /run/libvirt is empty: the host
    # answers SSH, but no libvirt daemon is there to talk to.
    port = free_port()
    proc = start_sshd(
        tmp_path,
        port=port,
        wrap=[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount -t tmpfs none /run/libvirt && exec "$@"',
            "sh",
        ],
    )
    try:
        job = _discover(admin_user, ssh_access, ssh_port=port)
    finally:
        stop_process(proc)
    assert job.status == "FAILURE"
    assert "No libvirt" in job.error, job.error
    assert not Server.objects.filter(status="RUNNING").exists()
    assert not Job.objects.filter(status="RUNNING").exists()


def _new_ed25519_key() -> str:
    """A key the sshd has never seen (not in authorized_keys)."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        return open(path).read()
