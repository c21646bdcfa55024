"""First-run estate for `make run`: admin user, this machine as a server, a pool,
a local repository with the tiny guest's ISO, and one VM made from it.

Idempotent: every step looks for what an earlier run made and keeps it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ovmweb.hypervisor.connections import close_all
from ovmweb.inventory.choices import Transport
from ovmweb.inventory.models import IsoFile, Repository, Server, ServerPool, VirtualMachine
from ovmweb.inventory.services import pools, repositories, servers, storage, vms
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs

POOL_NAME = "Default pool"
REPO_NAME = "Local repository"
VM_NAME = "tiny-guest"
ISO_NAME = "tiny.iso"


class Command(BaseCommand):
    help = "Create the admin user and the first estate (local server, pool, repository, tiny guest VM)."

    def handle(self, *args, **options):
        admin = self._admin()
        pool = self._pool(admin)
        server = self._server(admin, pool)
        repo = self._repository(admin, pool, server)
        iso = self._iso(admin, repo)
        self._vm(admin, pool, repo, iso)
        close_all()
        self.stdout.write(self.style.SUCCESS("Bootstrap done."))

    def _admin(self):
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        if admin is not None:
            return admin
        password = os.environ.get("OVMWEB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        admin = User.objects.create_superuser("admin", "admin@localhost", password)
        if not os.environ.get("OVMWEB_ADMIN_PASSWORD"):
            self.stdout.write(self.style.WARNING(f"Created user admin with password: {password}  (shown once)"))
        else:
            self.stdout.write("Created user admin (password from OVMWEB_ADMIN_PASSWORD).")
        return admin

    def _pool(self, admin):
        return ServerPool.objects.filter(name=POOL_NAME).first() or pools.server_pool_create(user=admin, name=POOL_NAME)

    def _server(self, admin, pool):
        """This machine, discovered over the local transport and in the pool."""
        server = Server.objects.filter(transport=Transport.LOCAL).first()
        if server is None or server.status != "RUNNING":
            # A known server is read again only when asked to (a discovery never rewrites one).
            known = {"rediscover": True} if server is not None else {"name": "localhost", "server_pool": pool}
            _run(
                servers.server_discover(
                    user=admin, hostname="localhost", transport=Transport.LOCAL, ssh_port=22, **known
                )
            )
            server = Server.objects.get(transport=Transport.LOCAL)
            self.stdout.write(f"Discovered {server.name}: {server.cpu_model_name}, {', '.join(server.domain_types)}")
        if server.server_pool_id is None:
            servers.server_update(server=server, user=admin, server_pool=pool)
        return server

    def _repository(self, admin, pool, server):
        repo = Repository.objects.filter(name=REPO_NAME).first()
        if repo is not None:
            return repo
        Path(settings.OVMWEB_LOCAL_REPOSITORY_PATH).mkdir(parents=True, exist_ok=True)
        _run(
            repositories.repository_create(
                user=admin,
                name=REPO_NAME,
                kind="LOCAL",
                path=settings.OVMWEB_LOCAL_REPOSITORY_PATH,
                server=server,
                server_pools=[pool],
            )
        )
        repo = Repository.objects.get(name=REPO_NAME)
        self.stdout.write(f"Repository {repo.name} at {repo.path}")
        return repo

    def _iso(self, admin, repo):
        iso = IsoFile.objects.filter(repository=repo, name=ISO_NAME).first()
        if iso is not None:
            return iso
        source = Path(settings.VAR_DIR) / "guest" / ISO_NAME
        if not source.exists():
            raise CommandError(f"{source} is missing: run `make guest` (scripts/build-tiny-guest.sh)")
        with open(source, "rb") as fh:
            _run(storage.iso_upload(repository=repo, user=admin, name=ISO_NAME, fileobj=fh, size=source.stat().st_size))
        iso = IsoFile.objects.get(repository=repo, name=ISO_NAME)
        self.stdout.write(f"Imported {ISO_NAME} into {repo.name}")
        return iso

    def _vm(self, admin, pool, repo, iso) -> None:
        if VirtualMachine.objects.filter(name=VM_NAME).exists():
            return
        vm = vms.vm_create(
            user=admin,
            name=VM_NAME,
            server_pool=pool,
            repository=repo,
            domain_type="HVM",
            os_type="OTHER_LINUX",
            memory_mib=256,
            max_memory_mib=256,
            source={"kind": "iso", "iso": iso},
            vnics=[{"network": None, "model": "e1000"}],
            boot_order=["cdrom", "disk"],
        )
        run_pending_jobs()
        storage.vm_config_write(vm=vm)
        self.stdout.write(f"Created VM {VM_NAME}: start it from the Virtual Machines page.")


def _run(job: Job) -> Job:
    """Run the queued jobs here (no worker yet) and return ``job``; its failure stops the command."""
    run_pending_jobs()
    job.refresh_from_db()
    if job.status != "SUCCESS":
        raise CommandError(f"{job.summary}: {job.error or job.status}")
    return job
