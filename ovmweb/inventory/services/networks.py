"""Networks: a libvirt network or a host bridge that VNICs attach to (optionally on a VLAN)."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.services import event_record

from ..choices import NetworkRole
from ..models import Network, ServerPool

_UPDATABLE = {"name", "bridge", "libvirt_network", "vlan_id", "roles", "description"}


def _check(network: Network) -> None:
    if network.bridge and network.libvirt_network:
        raise ValidationError({"bridge": [_("Give either a host bridge or a libvirt network, not both.")]})
    bad = [r for r in network.roles if r not in NetworkRole.values]
    if bad:
        raise ValidationError({"roles": [_("Unknown role(s): %(roles)s") % {"roles": ", ".join(map(str, bad))}]})


@transaction.atomic
def network_create(
    *,
    user,
    name: str,
    bridge: str = "",
    libvirt_network: str = "",
    vlan_id: int | None = None,
    roles: Iterable[str] = (),
    server_pools: Iterable[ServerPool] = (),
    description: str = "",
) -> Network:
    network = Network(
        name=name,
        bridge=bridge,
        libvirt_network=libvirt_network,
        vlan_id=vlan_id,
        roles=list(roles),
        description=description,
    )
    _check(network)
    network.full_clean()
    network.save()
    network.server_pools.set(list(server_pools))
    event_record(obj=network, type="network.created", text=_("Network %(name)s created.") % {"name": name}, user=user)
    return network


@transaction.atomic
def network_update(*, network: Network, user, server_pools: Iterable[ServerPool] | None = None, **changes) -> Network:
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise ValidationError({n: _("This field cannot be changed here.") for n in unknown})
    network = Network.objects.select_for_update().get(pk=network.pk)
    for field, value in changes.items():
        setattr(network, field, list(value) if field == "roles" else value)
    _check(network)
    network.full_clean()
    network.save()
    if server_pools is not None:
        network.server_pools.set(list(server_pools))
    event_record(
        obj=network, type="network.updated", text=_("Network %(name)s updated.") % {"name": network.name}, user=user
    )
    return network


@transaction.atomic
def network_delete(*, network: Network, user) -> None:
    if network.vnics.exists():
        raise Conflict(_("Network %(name)s still has VNICs attached.") % {"name": network.name})
    event_record(
        obj=None, type="network.deleted", text=_("Network %(name)s deleted.") % {"name": network.name}, user=user
    )
    network.delete()
