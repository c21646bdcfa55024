#!/usr/bin/env bash
# Starts the real components ovmweb talks to, idempotently and without systemd:
#  - virtlogd + virtlockd + libvirtd (QEMU driver, cgroups off: these machines have no systemd;
#    disk leases through libvirt's lockd lock manager, lockspace in ${OVMWEB_LOCKSPACE_DIR:-
#    /var/lib/libvirt/lockd/files}: on a pool of real servers, a directory of the shared
#    repository that every server sees, so QEMU cannot open a disk a guest elsewhere holds)
#  - an sshd on 127.0.0.1:${OVMWEB_TEST_SSH_PORT:-2222} with its own host key and a
#    client key made for this machine, so the local machine is also an SSH "server".
# Writes var/ssh/{id_ed25519,host_fingerprint,port} for the tests and `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${OVMWEB_VAR_DIR:-$PWD/var}
SSH_DIR=$VAR/ssh
PORT=${OVMWEB_TEST_SSH_PORT:-2222}
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images "$SSH_DIR"

# libvirt: run QEMU as root (no libvirt-qemu user needed) and without cgroups.
conf=/etc/libvirt/qemu.conf
if ! grep -q '^# ovmweb' "$conf" 2>/dev/null; then
  cat >>"$conf" <<'CONF'
# ovmweb: no systemd here; QEMU runs as root without cgroups
user = "root"
group = "root"
dynamic_ownership = 0
cgroup_controllers = [ ]
remember_owner = 0
swtpm_user = "root"
swtpm_group = "root"
CONF
fi
# Disk leases: libvirt's lockd lock manager (virtlockd holds one lease per writable disk).
# Applies when libvirtd starts: a libvirtd already running keeps its configuration.
if ! grep -q '^# ovmweb: disk leases' "$conf"; then
  cat >>"$conf" <<'CONF'
# ovmweb: disk leases (one disk, one running guest) through virtlockd
lock_manager = "lockd"
CONF
fi
LOCKSPACE=${OVMWEB_LOCKSPACE_DIR:-/var/lib/libvirt/lockd/files}
mkdir -p "$LOCKSPACE"
cat >/etc/libvirt/qemu-lockd.conf <<CONF
# written by ovmweb scripts/start-services.sh
auto_disk_leases = 1
require_lease_for_disks = 1
file_lockspace_dir = "$LOCKSPACE"
CONF
# Debian builds in libvirt-qemu as a default user in places qemu.conf does not reach.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
getent group kvm >/dev/null || groupadd -r kvm
pgrep -x virtlogd >/dev/null || virtlogd -d
# Before libvirtd, which does not start it. Never stop it under running guests (SIGTERM kills them).
pgrep -x virtlockd >/dev/null || virtlockd -d
if ! pgrep -x libvirtd >/dev/null; then
  libvirtd -d
fi
for _ in $(seq 1 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
virsh -c qemu:///system version >/dev/null

# sshd on a loopback port with keys of its own.
[ -f "$SSH_DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/ssh_host_ed25519_key"
[ -f "$SSH_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ovmweb-manager -f "$SSH_DIR/id_ed25519"
mkdir -p /root/.ssh && chmod 700 /root/.ssh
touch /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
grep -qF "$(cut -d' ' -f2 "$SSH_DIR/id_ed25519.pub")" /root/.ssh/authorized_keys || cat "$SSH_DIR/id_ed25519.pub" >>/root/.ssh/authorized_keys
cat >"$SSH_DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $SSH_DIR/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
MaxSessions 1000
MaxStartups 200:30:400
PidFile $SSH_DIR/sshd.pid
Subsystem sftp internal-sftp
UsePAM no
CONF
mkdir -p /run/sshd
# An sshd of another checkout on this port would present another host key:
# replace it with ours (only sshds started by this script, recognised by config path).
listener=$(ss -ltnpH "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
ours=$(cat "$SSH_DIR/sshd.pid" 2>/dev/null || true)
if [ -n "$listener" ] && [ "$listener" != "$ours" ] && tr '\0' ' ' <"/proc/$listener/cmdline" | grep -q "ssh/sshd_config"; then
  kill "$listener"; sleep 0.3
fi
if ! { [ -n "$ours" ] && kill -0 "$ours" 2>/dev/null && [ "$listener" = "$ours" ]; }; then
  /usr/sbin/sshd -f "$SSH_DIR/sshd_config"
fi
ssh-keygen -lf "$SSH_DIR/ssh_host_ed25519_key.pub" | awk '{print $2}' >"$SSH_DIR/host_fingerprint"
echo "$PORT" >"$SSH_DIR/port"
for _ in $(seq 1 50); do
  ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i "$SSH_DIR/id_ed25519" -p "$PORT" root@127.0.0.1 true && break
  sleep 0.2
done
echo "libvirtd up; sshd on 127.0.0.1:$PORT ($(cat "$SSH_DIR/host_fingerprint"))"
