"""factory_boy factories for the whole inventory (shared by every test package).

Factories build rows directly: they are test data, not a way around the
services. Tests of a rule call the service that enforces it.
"""

from __future__ import annotations

import itertools

import factory
from django.contrib.auth import get_user_model

from ovmweb.inventory import choices, models

_mac_counter = itertools.count(1)


def _next_test_mac() -> str:
    # Outside the default allocation range (00:21:f6:...), so factory rows never
    # collide with MACs the services hand out in the same test.
    n = next(_mac_counter)
    return f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-test-123")

    @factory.post_generation
    def finish(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class SuperUserFactory(UserFactory):
    is_staff = True
    is_superuser = True


class ProcessorCompatibilityGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ProcessorCompatibilityGroup

    name = factory.Sequence(lambda n: f"compat-{n}")


class ServerPoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ServerPool

    name = factory.Sequence(lambda n: f"pool-{n}")
    architecture = choices.Architecture.X86


class ServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Server

    name = factory.Sequence(lambda n: f"server-{n}")
    hostname = factory.Sequence(lambda n: f"server-{n}.example.com")
    transport = choices.Transport.SSH
    ssh_port = 22
    host_key_fingerprint = "SHA256:" + "A" * 43
    status = choices.ServerStatus.RUNNING
    server_pool = factory.SubFactory(ServerPoolFactory)
    host_uuid = factory.Faker("uuid4")
    cpu_vendor = "GenuineIntel"
    cpu_family = 6
    cpu_model = 85
    cpu_model_name = "Intel(R) Xeon(R)"
    cpu_cores = 8
    memory_mib = 32768
    libvirt_version = "9.0.0"
    qemu_version = "7.2.0"
    domain_types = factory.LazyFunction(lambda: ["qemu"])


class RepositoryFactory(factory.django.DjangoModelFactory):
    """A shared repository presented to one pool (use ``kind=LOCAL, server=...`` for a local one)."""

    class Meta:
        model = models.Repository
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"repo-{n}")
    kind = choices.RepositoryKind.SHARED
    backend = choices.RepositoryBackend.DIR
    path = factory.Sequence(lambda n: f"/srv/ovmweb/repo-{n}")
    capacity_bytes = 1 << 40
    available_bytes = 1 << 40

    @factory.post_generation
    def server_pools(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.server_pools.set(extracted)


class NetworkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Network
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"net-{n}")
    libvirt_network = "default"
    roles = factory.LazyFunction(lambda: [choices.NetworkRole.VIRTUAL_MACHINE])

    @factory.post_generation
    def server_pools(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.server_pools.set(extracted)


class IsoFileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.IsoFile

    name = factory.Sequence(lambda n: f"install-{n}.iso")
    repository = factory.SubFactory(RepositoryFactory)
    size_bytes = 700 * 1024 * 1024


class VirtualDiskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.VirtualDisk

    name = factory.Sequence(lambda n: f"disk-{n}")
    repository = factory.SubFactory(RepositoryFactory)
    volume = factory.Sequence(lambda n: f"disk-{n:08d}.qcow2")
    size_bytes = 1 << 30
    format = choices.DiskFormat.QCOW2
    sparse = True


class VirtualMachineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.VirtualMachine

    name = factory.Sequence(lambda n: f"vm-{n}")
    domain_type = choices.DomainType.HVM
    server_pool = factory.SubFactory(ServerPoolFactory)
    repository = factory.SubFactory(RepositoryFactory)
    os_type = choices.OsType.ORACLE_LINUX_6
    vcpus = 1
    max_vcpus = 4
    memory_mib = 512
    max_memory_mib = 2048
    status = choices.VmStatus.STOPPED


class VmDiskSlotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.VmDiskSlot

    vm = factory.SubFactory(VirtualMachineFactory)
    slot = factory.Sequence(lambda n: n % 60)
    kind = choices.DiskSlotKind.DISK
    virtual_disk = factory.SubFactory(VirtualDiskFactory, repository=factory.SelfAttribute("..vm.repository"))
    bus = choices.DiskBus.VIRTIO


class CdromSlotFactory(VmDiskSlotFactory):
    kind = choices.DiskSlotKind.CDROM
    virtual_disk = None
    iso = factory.SubFactory(IsoFileFactory, repository=factory.SelfAttribute("..vm.repository"))
    bus = choices.DiskBus.SATA


class VnicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Vnic

    vm = factory.SubFactory(VirtualMachineFactory)
    mac = factory.LazyFunction(_next_test_mac)
    network = factory.SubFactory(NetworkFactory)
    model = choices.VnicModel.VIRTIO


class AntiAffinityGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.AntiAffinityGroup

    name = factory.Sequence(lambda n: f"aag-{n}")
    server_pool = factory.SubFactory(ServerPoolFactory)


class CloneCustomizerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.CloneCustomizer

    name = factory.Sequence(lambda n: f"customizer-{n}")
    vm = factory.SubFactory(VirtualMachineFactory)


class VirtualApplianceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.VirtualAppliance

    name = factory.Sequence(lambda n: f"appliance-{n}")
    repository = factory.SubFactory(RepositoryFactory)
