#!/usr/bin/env bash
# Installs the Debian packages ovmweb needs (hypervisor, sshd, browser, guest
# build tools, PostgreSQL, Redis and nginx for CI), only when something is missing.
set -euo pipefail
# libvirt-daemon also brings virtlockd and libvirt's lockd plugin (disk leases, scripts/start-services.sh).
pkgs=(
  qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  libvirt-dev pkg-config openssh-server openssh-client chromium busybox-static xorriso
  isolinux syslinux-common socat cpio iproute2 postgresql redis-server
  nginx  # the reverse proxy of tests/scaleout (run by the test on a port of its own)
)
missing=()
command -v npm >/dev/null || pkgs+=(nodejs npm)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
