"""VNICs and the MAC address range (seed 7.4). A VNIC always belongs to a VM."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.live import publish
from ovmweb.jobs.services import event_record, job_submit

from .. import hot_rules, rules
from ..choices import VmStatus
from ..models import MacAddressRange, Network, VirtualMachine, Vnic

_SINGLETON = 1
# A concurrent allocator on another connection may take the MAC we picked between
# our read and our INSERT (the range-row lock prevents it on PostgreSQL; this is
# the backstop): retry with a fresh read.
_ATTEMPTS = 20


class MacRangeExhausted(Conflict):
    """Every MAC of the configured range is in use."""


def _range_row(*, lock: bool) -> MacAddressRange:
    start, end = settings.OVMWEB_MAC_RANGE_DEFAULT
    row, _created = MacAddressRange.objects.get_or_create(pk=_SINGLETON, defaults={"start": start, "end": end})
    if lock:
        row = MacAddressRange.objects.select_for_update().get(pk=_SINGLETON)
    return row


def mac_range_get() -> MacAddressRange:
    return _range_row(lock=False)


def mac_range_set(*, start: str, end: str) -> MacAddressRange:
    """Replace the range. Malformed, multicast and reversed ranges are refused with field errors."""
    start, end = rules.check_mac_range(start, end)
    with transaction.atomic():
        row = _range_row(lock=True)
        row.start, row.end = start, end
        row.full_clean()
        row.save()
        event_record(
            obj=row, type="mac_range.update", text=_("MAC address range set to %(s)s - %(e)s.") % {"s": start, "e": end}
        )
    return row


def mac_allocate() -> str:
    """The lowest free MAC of the range. Call inside the transaction that inserts the
    VNIC (vnic_create does): there the range row stays locked until commit."""
    with transaction.atomic():
        row = _range_row(lock=True)
        lo, hi = rules.mac_to_int(row.start), rules.mac_to_int(row.end)
        # Fixed-width lower-case hex: string order is numeric order.
        used = Vnic.objects.filter(mac__gte=row.start, mac__lte=row.end)
        top = used.order_by("-mac").values_list("mac", flat=True).first()
        if top is None:
            return row.start
        nxt = rules.mac_to_int(top) + 1
        if nxt <= hi:
            return rules.int_to_mac(nxt)
        # The top of the range is taken: look for a hole left by deleted VNICs.
        expected = lo
        for mac in used.order_by("mac").values_list("mac", flat=True).iterator():
            value = rules.mac_to_int(mac)
            if value > expected:
                return rules.int_to_mac(expected)
            expected = value + 1
        raise MacRangeExhausted(
            _("The MAC address range %(s)s - %(e)s is exhausted: every address is in use. Widen the range.")
            % {"s": row.start, "e": row.end}
        )


def vnic_create(
    *, vm: VirtualMachine, user, network: Network | None = None, model: str | None = None, mac: str | None = None
) -> Vnic:
    with transaction.atomic():
        vm = VirtualMachine.objects.select_for_update().get(pk=vm.pk)
        hot_rules.check_device_change(vm, hot_rules.Hot.VNIC)
        model = model or rules.vnic_model_for(vm.domain_type)
        position = vm.vnics.count()
        if mac is not None:
            mac = rules.normalize_mac(mac)
        for _attempt in range(_ATTEMPTS):
            candidate = mac or mac_allocate()
            vnic = Vnic(vm=vm, mac=candidate, network=network, model=model, position=position)
            vnic.full_clean(validate_unique=False)
            try:
                with transaction.atomic():
                    vnic.save()
                break
            except IntegrityError:
                if mac is not None:
                    raise ValidationError({"mac": [_("MAC %(mac)s is already in use.") % {"mac": mac}]}) from None
        else:
            raise Conflict(_("Could not allocate a free MAC address; try again."))
        event_record(
            obj=vm,
            type="vnic.create",
            user=user,
            text=_("VNIC %(mac)s added to %(vm)s.") % {"mac": vnic.mac, "vm": vm.name},
        )
        if vm.status == VmStatus.RUNNING:
            job_submit(
                operation="vm.hot_update",
                summary=_("Hot-add VNIC %(mac)s to %(vm)s") % {"mac": vnic.mac, "vm": vm.name},
                user=user,
                target=vm,
                params={"vm_id": vm.pk, "attach_vnic_id": vnic.pk},
                lock=[vm],
            )
        publish("vm", {"id": vm.pk, "vnics_changed": True})
    return vnic


def vnic_delete(*, vnic: Vnic, user) -> None:
    with transaction.atomic():
        vm = VirtualMachine.objects.select_for_update().get(pk=vnic.vm_id)
        hot_rules.check_device_change(vm, hot_rules.Hot.VNIC)
        mac = vnic.mac
        if vm.status == VmStatus.RUNNING:
            job_submit(
                operation="vm.hot_update",
                summary=_("Hot-remove VNIC %(mac)s from %(vm)s") % {"mac": mac, "vm": vm.name},
                user=user,
                target=vm,
                params={"vm_id": vm.pk, "detach_mac": mac, "detach_model": vnic.model},
                lock=[vm],
            )
        vnic.delete()
        event_record(
            obj=vm,
            type="vnic.delete",
            user=user,
            text=_("VNIC %(mac)s removed from %(vm)s.") % {"mac": mac, "vm": vm.name},
        )
        publish("vm", {"id": vm.pk, "vnics_changed": True})
