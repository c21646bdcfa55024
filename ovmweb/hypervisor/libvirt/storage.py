"""Storage: pools (one per repository sub-directory) and their volumes."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from ovmweb.errors import DriverError, OperationFailed

from .. import xml as xmlbuild
from ..base import PoolInfo, PoolSpec, VolumeInfo
from .connection import Connection, errors, ignoring_errors, translate

_CHUNK = 1024 * 1024


def _prealloc_flags(format: str, sparse: bool) -> int:
    """Flags that make libvirt really allocate a non-sparse volume.

    For qcow2, ``allocation == capacity`` alone still yields a sparse file
    (measured: 200 KiB for 64 MiB); with PREALLOC_METADATA libvirt passes
    ``preallocation=falloc`` to qemu-img, for creation and for copies alike.
    A raw volume is allocated from ``allocation`` alone (and refuses the flag).
    """
    if sparse or format != "qcow2":
        return 0
    return libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA


def _volume_format(vol) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("./target/format")  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
    return fmt.get("type") if fmt is not None else "raw"


# libvirt calls raw bytes that hold a CD image "iso" (and copies them as raw).
_PROBED_AS_RAW = {"raw", "iso"}


def _volume_document(**fields) -> str:
    try:
        return xmlbuild.volume_xml(**fields)
    except ValueError as exc:  # no known format
        raise OperationFailed(str(exc)) from exc


def _check_copy_source(src, name: str, recorded: str) -> None:
    """Refuse to copy ``src`` unless libvirt reads its header as the format ovmweb recorded.

    createXMLFrom converts the source as the format libvirt's pool probed from the file's
    header: a raw disk whose guest wrote a qcow2 header (naming a host file as its backing
    file) would be read as qcow2, the host file copied into the clone."""
    probed = _volume_format(src)
    if recorded == probed or (recorded == "raw" and probed in _PROBED_AS_RAW):
        return
    raise OperationFailed(f"volume {name} is recorded as {recorded} but its header reads as {probed}: not copied")


def _vol_info(vol) -> VolumeInfo:
    _type, capacity, allocation = vol.info()
    return VolumeInfo(
        name=vol.name(),
        path=vol.path(),
        capacity_bytes=capacity,
        allocation_bytes=allocation,
        format=_volume_format(vol),
    )


def _pool_info(pool) -> PoolInfo:
    _state, capacity, allocation, available = pool.info()
    path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
    volumes = [_vol_info(vol) for vol in pool.listAllVolumes(0)]
    return PoolInfo(
        name=pool.name(),
        path=path,
        capacity_bytes=capacity,
        allocation_bytes=allocation,
        available_bytes=available,
        volumes=sorted(volumes, key=lambda v: v.name),
    )


def _start_pool(pool, spec: PoolSpec, *, build: bool) -> PoolInfo:
    """Start (building its directory if asked), autostart and refresh an existing pool of ``spec``."""
    path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
    if path.rstrip("/") != spec.path.rstrip("/"):
        raise OperationFailed(f"storage pool {spec.name} already exists at {path}")
    with errors(f"starting storage pool {spec.name} at {spec.path}"):
        if pool.isActive():
            try:
                pool.refresh(0)
            except libvirt.libvirtError:
                pool.destroy()  # its directory went away: build it again below
        if not pool.isActive():
            if build:
                pool.build(0)
            pool.create(0)
        pool.setAutostart(1)
        pool.refresh(0)
        return _pool_info(pool)


def _forget_pool(pool) -> None:
    try:
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass


def _send_all(stream, fileobj, size: int, name: str, progress: Callable[[int], None] | None) -> None:
    done = 0
    while done < size:
        data = fileobj.read(min(_CHUNK, size - done))
        if not data:
            raise OperationFailed(f"upload of {name} ended after {done} of {size} bytes")
        view = memoryview(data)
        while view:
            sent = stream.send(bytes(view))
            view = view[sent:]
        done += len(data)
        if progress:
            progress(done)


class StorageMixin(Connection):
    # ---------------------------------------------------------------- pools
    def _existing_pool(self, name: str):
        """The pool called ``name``, None if there is none."""
        try:
            return self._conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return None
            raise translate(exc, f"storage pool {name}") from exc

    def pool_define(self, spec: PoolSpec, *, build: bool = True) -> PoolInfo:
        """Idempotent. ``build=False`` requires the directory to exist already
        (a repository path that is missing is an error, not something to create)."""
        try:
            document = xmlbuild.pool_xml(spec)
        except ValueError as exc:
            raise OperationFailed(str(exc)) from exc
        pool = self._existing_pool(spec.name)
        created = pool is None
        if created:
            with errors(f"defining storage pool {spec.name}"):
                pool = self._conn.storagePoolDefineXML(document, 0)
        try:
            return _start_pool(pool, spec, build=build)
        except DriverError:
            if created:
                _forget_pool(pool)  # nothing half made: forget the pool we just defined
            raise

    def pool_refresh(self, name: str) -> PoolInfo:
        pool = self._pool(name)
        with errors(f"refreshing storage pool {name}"):
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
            return _pool_info(pool)

    def pool_undefine(self, name: str) -> None:
        pool = self._existing_pool(name)
        if pool is None:
            return
        with errors(f"removing storage pool {name}"):
            if pool.isActive():
                pool.destroy()
            pool.undefine()

    # ---------------------------------------------------------------- volumes
    def volume_create(
        self, pool: str, name: str, capacity_bytes: int, *, format: str = "qcow2", sparse: bool = True
    ) -> VolumeInfo:
        p = self._pool(pool)
        document = _volume_document(
            name=name, capacity_bytes=capacity_bytes, format=format, allocation_bytes=0 if sparse else capacity_bytes
        )
        with errors(f"creating volume {name} in {pool}"):
            vol = p.createXML(document, _prealloc_flags(format, sparse))
            return _vol_info(vol)

    def volume_info(self, pool: str, name: str) -> VolumeInfo:
        vol = self._volume(pool, name)
        with errors(f"reading volume {name}"):
            return _vol_info(vol)

    def volume_delete(self, pool: str, name: str) -> None:
        p = self._pool(pool)
        try:
            p.refresh(0)
            vol = p.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return
            raise translate(exc, f"volume {name} in {pool}") from exc
        with errors(f"deleting volume {name}"):
            vol.delete(0)

    def volume_resize(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        vol = self._volume(pool, name)
        with errors(f"resizing volume {name}"):
            if capacity_bytes < vol.info()[1]:
                raise OperationFailed(f"volume {name} cannot shrink")
            vol.resize(capacity_bytes, 0)
            return _vol_info(vol)

    def volume_clone(
        self,
        pool: str,
        source: str,
        target_pool: str,
        target: str,
        *,
        clone_type: str,
        source_format: str,
        format: str = "qcow2",
    ) -> VolumeInfo:
        if clone_type not in ("thin", "sparse", "non_sparse"):
            raise OperationFailed(f"unknown clone type {clone_type}")
        src = self._volume(pool, source)
        dst_pool = self._pool(target_pool)
        with errors(f"cloning {source} to {target}"):
            capacity = src.info()[1]
            if clone_type == "thin":
                # A qcow2 overlay on the source (ext4 here has no reflink), its backing format
                # the recorded one, written into the overlay's header (qemu-img create -F).
                document = _volume_document(
                    name=target,
                    capacity_bytes=capacity,
                    format="qcow2",
                    backing_path=src.path(),
                    backing_format=source_format,
                )
                return _vol_info(dst_pool.createXML(document, 0))
            _check_copy_source(src, source, source_format)
            allocation = capacity if clone_type == "non_sparse" else 0
            document = _volume_document(
                name=target, capacity_bytes=capacity, format=format, allocation_bytes=allocation
            )
            vol = dst_pool.createXMLFrom(document, src, _prealloc_flags(format, clone_type == "sparse"))
            return _vol_info(vol)

    def volume_protect(self, pool: str, name: str) -> bool:
        """Make a thin-clone base read-only (0444) where this process reaches the file
        (a local daemon); QEMU opens backing files read-only anyway, so a remote base is
        only unprotected against hand edits. True when the mode was changed."""
        path = self._volume(pool, name).path()
        if "://" in self.uri and not self.uri.split("://", 1)[1].startswith("/"):
            return False  # qemu+ssh://host/...: not this machine's file
        try:
            os.chmod(path, 0o444)
        except OSError:
            return False
        return True

    def volume_upload(
        self, pool: str, name: str, fileobj, size: int, *, progress: Callable[[int], None] | None = None
    ) -> VolumeInfo:
        p = self._pool(pool)
        with errors(f"creating volume {name} in {pool}"):
            # An upload (an ISO image, a disk to be inspected) is stored as the bytes it is: raw.
            vol = p.createXML(_volume_document(name=name, capacity_bytes=max(size, 1), format="raw"), 0)
        stream = None
        try:
            with errors(f"uploading {name}"):
                stream = self._conn.newStream(0)
                vol.upload(stream, 0, size, 0)
                _send_all(stream, fileobj, size, name, progress)
                stream.finish()
                stream = None
                p.refresh(0)
                return _vol_info(p.storageVolLookupByName(name))
        except BaseException:
            if stream is not None:
                ignoring_errors(stream.abort)
            ignoring_errors(vol.delete, 0)
            raise
