#!/usr/bin/env bash
# Builds the tiny guest into var/guest/: tiny.iso (BIOS-bootable with isolinux),
# vmlinuz and initrd.gz (for PVM direct kernel boot).
#
# The kernel is Debian's (the package linux-image-amd64 depends on), unpacked with
# dpkg -x and never installed; the initramfs is busybox-static plus the driver
# modules a guest needs under QEMU. /init brings up eth0, runs the ovmweb guest
# agent (guest/ovmweb-guest-agent) on the virtio-serial port org.ovmweb.messages.0, prints a banner containing
# "ovmweb tiny guest" and gives root shells on ttyS0 and tty1 (VGA). `poweroff`, or
# the ACPI power button that `virsh shutdown` presses, powers it off.
#
# Idempotent: nothing is rebuilt while the outputs match this script, the agent and the kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${OVMWEB_VAR_DIR:-$PWD/var}
OUT=$VAR/guest
WORK=$OUT/build
# Every input of the build (this script and the agent it copies in) is in the stamp:
# changing the module list or the agent rebuilds the guest.
INPUTS=(scripts/build-tiny-guest.sh guest/ovmweb-guest-agent)
SCRIPT_SUM=$(cat "${INPUTS[@]}" | sha256sum | cut -c1-16)

need=()
for tool in xorriso:xorriso cpio:cpio gzip:gzip modinfo:kmod; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || need+=(busybox-static)
[ -f /usr/lib/ISOLINUX/isolinux.bin ] || need+=(isolinux)
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The versioned image package behind the linux-image-amd64 metapackage.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
STAMP="$SCRIPT_SUM $KPKG"
if [ -f "$OUT/tiny.iso" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.gz" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "tiny guest up to date in $OUT"
  exit 0
fi

rm -rf "$WORK"
mkdir -p "$WORK/deb" "$OUT"
deb=$(ls "$OUT"/cache/"$KPKG"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  mkdir -p "$OUT/cache"
  # apt's sandbox user cannot write into a root-owned var/; it falls back to root with a warning.
  (cd "$OUT/cache" && apt-get download "$KPKG" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  deb=$(ls "$OUT"/cache/"$KPKG"_*.deb | head -1)
fi
dpkg -x "$deb" "$WORK/deb"
KVER=$(ls "$WORK/deb/lib/modules" | head -1)
MODDIR=$WORK/deb/lib/modules/$KVER/kernel

# Modules in load order, dependencies first (resolved from the modules themselves).
# The disk drivers cover every bus ovmweb offers: virtio (PVHVM, PVM), SATA (ahci) and
# IDE (ata_piix, the PIIX IDE controller of QEMU's i440FX machine; ata_generic as a
# fallback); sd_mod and sr_mod turn ATA disks and CD-ROMs into block devices.
WANTED="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_net virtio_console
  scsi_mod libata ahci ata_piix ata_generic sd_mod cdrom sr_mod e1000 button evdev"
declare -A seen=()
order=()
modfile() { find "$MODDIR" -name "$1.ko" -o -name "$1.ko.xz" -o -name "${1//_/-}.ko" -o -name "${1//_/-}.ko.xz" | head -1; }
add_module() {
  local name=$1 file deps dep
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  file=$(modfile "$name")
  [ -n "$file" ] || return 0  # built into the kernel
  deps=$(modinfo -F depends "$file" | tr ',' ' ')
  for dep in $deps; do add_module "$dep"; done
  order+=("$name:$file")
}
for m in $WANTED; do add_module "$m"; done

ROOT=$WORK/initramfs
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,var/log,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox "$ROOT/bin/busybox"
: >"$ROOT/etc/modules.order"
for entry in "${order[@]}"; do
  name=${entry%%:*} file=${entry#*:}
  case "$file" in
    *.xz) xz -dc "$file" >"$ROOT/lib/modules/$name.ko" ;;
    *) cp "$file" "$ROOT/lib/modules/$name.ko" ;;
  esac
  echo "$name" >>"$ROOT/etc/modules.order"
done

cat >"$ROOT/etc/banner" <<EOF
=== ovmweb tiny guest (Linux $KVER, busybox) ===
EOF
echo "root:x:0:0:root:/root:/bin/sh" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"
echo tinyguest >"$ROOT/etc/hostname"

cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
exec /sbin/init
EOF
cat >"$ROOT/etc/inittab" <<'EOF'
::sysinit:/etc/rc
ttyS0::respawn:/bin/sh -c 'cat /etc/banner; exec /bin/sh -l'
tty1::respawn:/bin/sh -c 'cat /etc/banner; exec /bin/sh -l'
::ctrlaltdel:/sbin/poweroff -f
::shutdown:/bin/sync
EOF
cat >"$ROOT/etc/profile" <<'EOF'
export PS1='\h:\w# ' PATH=/bin:/sbin:/usr/bin:/usr/sbin
EOF
cat >"$ROOT/etc/rc" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /run/ovmweb && mount -t devpts devpts /dev/pts
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m.ko 2>/dev/null; done
hostname -F /etc/hostname
ip link set lo up
for dev in /sys/class/net/eth*; do [ -e "$dev" ] && ip link set "${dev##*/}" up; done
/sbin/power-button &
/sbin/ovmweb-guest-agent &
for tty in /dev/ttyS0 /dev/tty1; do cat /etc/banner >"$tty" 2>/dev/null; done
EOF
# Any event from the ACPI power button (what `virsh shutdown` presses) powers off.
cat >"$ROOT/sbin/power-button" <<'EOF'
#!/bin/sh
for n in /sys/class/input/event*/device/name; do
  [ "$(cat "$n" 2>/dev/null)" = "Power Button" ] || continue
  ev=${n%/device/name}; ev=/dev/input/${ev##*/}
  dd if="$ev" of=/dev/null bs=24 count=1 2>/dev/null && exec poweroff
done
EOF
# The message agent is the one this repository ships for every guest (guest/).
install -m 755 guest/ovmweb-guest-agent "$ROOT/sbin/ovmweb-guest-agent"
chmod 755 "$ROOT/init" "$ROOT/etc/rc" "$ROOT/sbin/power-button"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --owner 0:0 | gzip -9 >"$WORK/initrd.gz")
cp "$WORK/deb/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

ISO=$WORK/iso
mkdir -p "$ISO/isolinux" "$ISO/boot"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$ISO/isolinux/"
cp "$WORK/vmlinuz" "$WORK/initrd.gz" "$ISO/boot/"
cat >"$ISO/isolinux/isolinux.cfg" <<'EOF'
DEFAULT tiny
PROMPT 0
TIMEOUT 0
LABEL tiny
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.gz
  APPEND console=tty0 console=ttyS0,115200 quiet panic=-1
EOF
xorriso -as mkisofs -quiet -o "$WORK/tiny.iso" -V OVMWEB_TINY -J -R \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin "$ISO" 2>/dev/null

# Replace the outputs only when everything was built.
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
mv "$WORK/initrd.gz" "$OUT/initrd.gz"
mv "$WORK/tiny.iso" "$OUT/tiny.iso"
echo "$STAMP" >"$OUT/.stamp"
echo "tiny guest built in $OUT ($KPKG; modules: $(tr '\n' ' ' <"$ROOT/etc/modules.order"))"
rm -rf "$WORK"
