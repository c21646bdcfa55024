#!/usr/bin/env bash
# two-servers.sh up|down|status - two hypervisor "servers" a and b on this one machine,
# for the live migration tests (tests/migration/) and bench/migration.py.
#
# Each server has its own network + mount + UTS namespace (joined by one veth pair,
# 10.99.0.1 <-> 10.99.0.2: addresses only inside the namespaces made here), its own
# libvirtd + virtlogd + virtlockd (disk leases in $STATE/shared/.lockspace; private /run, /etc/libvirt, /var/lib/libvirt; distinct host_uuid,
# which libvirt compares to refuse "migrating to the same host") and its own sshd on
# port 22 with a host key of its own, published on 127.0.0.1:<port> of the root
# namespace by socat. What the servers share is the root filesystem: $STATE/shared is
# the same directory on both (a shared repository); $STATE/local is a different,
# private directory on each (a local repository at the same path).
#
# Writes $STATE/servers.json: per server ssh_port, host key fingerprint, ip, hostname;
# the manager's private key file, shared_path, local_path and, per server, the directory
# seen at local_path inside it (local_backing, for tests that prepare local repositories).
# `down` kills every process inside the namespaces and the socat forwarders, unmounts, and removes the
# runtime files; only $STATE/keys and $STATE/cache (QEMU capabilities, ~8 s to probe)
# stay. The machine's own libvirtd, sshd and networks are never touched.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
VAR=${OVMWEB_VAR_DIR:-$PWD/var}
STATE=$VAR/two-servers
RUN=$STATE/run        # everything `down` removes
NSD=$RUN/ns           # persistent namespace files (bind mounts)
KEYS=$STATE/keys
SERVERS=(a b)
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
declare -A HN=([a]=ovmweb-a [b]=ovmweb-b)
declare -A SSH_PORT=()

log() { printf '[two-servers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
nsx() { local s=$1; shift; nsenter --net="$NSD/$s.net" --uts="$NSD/$s.uts" --mount="$NSD/$s.mnt" -- "$@"; }
sock_uri() { echo "qemu:///system?socket=$RUN/$1/run/libvirt/libvirt-sock"; }
is_up() { grep -q " $NSD/[ab]\.\(net\|mnt\|uts\) " /proc/self/mountinfo 2>/dev/null; }
port_free() { [[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

server_config() {
  local s=$1 d=$RUN/$1
  mkdir -p "$d"/run/{libvirt,sshd} "$d"/etc-libvirt/{qemu,secrets,storage} "$d"/varlib/{images,qemu} \
           "$d"/log/qemu "$d"/etc "$d"/local "$STATE/cache/$s"
  chmod 755 "$d/run/sshd"
  [[ -f /etc/libvirt/libvirt.conf ]] && cp /etc/libvirt/libvirt.conf "$d/etc-libvirt/"
  # Unix socket only: ovmweb reaches each daemon through that server's sshd.
  cat >"$d/etc-libvirt/libvirtd.conf" <<EOF
unix_sock_group = "root"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  # Both daemons share the machine's one cgroup tree (their domain ids collide): no cgroups.
  # migration_host: the address the destination QEMU tells the source QEMU to connect to.
  cat >"$d/etc-libvirt/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
migration_host = "${IP[$s]}"
lock_manager = "lockd"
EOF
  # Disk leases: both servers' virtlockd lock in one lockspace on the shared directory, so a
  # guest on one server stops the other from opening its disk (HA, tests/ha/).
  mkdir -p "$STATE/shared/.lockspace"
  cat >"$d/etc-libvirt/qemu-lockd.conf" <<EOF
auto_disk_leases = 1
require_lease_for_disks = 1
file_lockspace_dir = "$STATE/shared/.lockspace"
EOF
  : >"$d/etc-libvirt/virtlogd.conf"
  : >"$d/etc-libvirt/virtlockd.conf"
  printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "${IP[a]}" "${HN[a]}" "${IP[b]}" "${HN[b]}" >"$d/etc/hosts"
  # No DNS in the namespaces: fail fast instead of waiting for timeouts.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$d/etc/resolv.conf"
  [[ -f $KEYS/$s.host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "${HN[$s]}" -f "$KEYS/$s.host_ed25519"
  cat >"$d/sshd_config" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $KEYS/$s.host_ed25519
PidFile /run/sshd.pid
AuthorizedKeysFile $KEYS/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
MaxSessions 1000
MaxStartups 200:30:400
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
EOF
}

make_ns() {
  local s=$1 d=$RUN/$1 t
  touch "$NSD/$s.net" "$NSD/$s.uts" "$NSD/$s.mnt"
  unshare --net="$NSD/$s.net" --uts="$NSD/$s.uts" --mount="$NSD/$s.mnt" --propagation private -- /bin/sh -ec "
    umount -l '$NSD'   # the copies of the namespace-file mounts would pin the namespaces
    hostname '${HN[$s]}'
    ip link set lo up
    mount --bind '$d/run' /run
    mount --bind '$d/etc-libvirt' /etc/libvirt
    mount --bind '$d/varlib' /var/lib/libvirt
    mount --bind '$STATE/cache/$s' /var/cache/libvirt
    mount --bind '$d/log' /var/log/libvirt
    mount --bind '$d/etc/hosts' /etc/hosts
    mount --bind '$d/etc/resolv.conf' /etc/resolv.conf
    mount --bind '$d/local' '$STATE/local'"
  for t in net uts mnt; do echo "$t:[$(stat -L -c %i "$NSD/$s.$t")]"; done >>"$RUN/ns.ids"
}

wait_for() {  # seconds command...
  local n=$(( $1 * 5 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "must be root"
  if is_up; then log "already up"; cat "$STATE/servers.json"; return 0; fi
  local t s p
  for t in unshare nsenter ip ss socat libvirtd virtlogd virtlockd virsh /usr/sbin/sshd ssh-keygen; do
    command -v "$t" >/dev/null || die "missing tool: $t (bash scripts/install-system.sh)"
  done
  trap '[[ ${UP_OK:-0} == 1 ]] || { log "up failed: tearing down"; cmd_down || true; }' EXIT
  rm -rf "$RUN" "$STATE/shared" "$STATE/servers.json"
  mkdir -p "$NSD" "$KEYS" "$STATE/shared" "$STATE/local"
  [[ -f $KEYS/manager_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C ovmweb-manager -f "$KEYS/manager_ed25519"
  cp "$KEYS/manager_ed25519.pub" "$KEYS/authorized_keys"
  # Namespace files persist as bind mounts, which needs a private parent mount.
  mount --bind "$NSD" "$NSD"
  mount --make-private "$NSD"
  for s in "${SERVERS[@]}"; do server_config "$s"; make_ns "$s"; done
  # The "LAN" between the two servers.
  nsenter --net="$NSD/a.net" ip link add veth-a type veth peer name veth-b netns "$NSD/b.net"
  for s in "${SERVERS[@]}"; do
    nsenter --net="$NSD/$s.net" ip addr add "${IP[$s]}/24" dev "veth-$s"
    nsenter --net="$NSD/$s.net" ip link set "veth-$s" up
    nsx "$s" virtlogd -d
    nsx "$s" virtlockd -d
    nsx "$s" libvirtd -d
    nsx "$s" /usr/sbin/sshd -f "$RUN/$s/sshd_config"
  done
  # sshd on 127.0.0.1:<port> of the root namespace, one socat per connection into the server.
  p=${OVMWEB_TWO_SERVERS_PORT:-22011}
  for s in "${SERVERS[@]}"; do
    while ! port_free "$p"; do p=$((p + 1)); done
    SSH_PORT[$s]=$p
    setsid socat TCP-LISTEN:"$p",bind=127.0.0.1,reuseaddr,fork \
      EXEC:"nsenter --net=$NSD/$s.net socat STDIO TCP\:${IP[$s]}\:22",nofork </dev/null >/dev/null 2>&1 &
    echo $! >"$RUN/socat-$s.pid"
    p=$((p + 1))
  done
  # The first call makes each libvirtd probe QEMU (cached in $STATE/cache afterwards).
  local -a w=()
  for s in "${SERVERS[@]}"; do wait_for 60 virsh -c "$(sock_uri "$s")" version & w+=($!); done
  for t in "${w[@]}"; do wait "$t" || die "a libvirtd did not come up (see $RUN/*/log/libvirtd.log)"; done
  for s in "${SERVERS[@]}"; do
    wait_for 10 ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -i "$KEYS/manager_ed25519" -p "${SSH_PORT[$s]}" root@127.0.0.1 "test -S /run/libvirt/libvirt-sock" \
      || die "sshd of $s not reachable on 127.0.0.1:${SSH_PORT[$s]}"
    local peer=${IP[a]}; [[ $s == a ]] && peer=${IP[b]}
    nsx "$s" timeout 5 bash -c "echo >/dev/tcp/$peer/22" || die "$s cannot reach its peer $peer over the veth link"
  done
  fp() { ssh-keygen -lf "$KEYS/$1.host_ed25519.pub" | awk '{print $2}'; }
  cat >"$STATE/servers.json.tmp" <<EOF
{
  "a": {"hostname": "127.0.0.1", "ssh_port": ${SSH_PORT[a]}, "fingerprint": "$(fp a)", "ip": "${IP[a]}", "name": "${HN[a]}"},
  "b": {"hostname": "127.0.0.1", "ssh_port": ${SSH_PORT[b]}, "fingerprint": "$(fp b)", "ip": "${IP[b]}", "name": "${HN[b]}"},
  "private_key": "$KEYS/manager_ed25519",
  "shared_path": "$STATE/shared",
  "local_path": "$STATE/local",
  "local_backing": {"a": "$RUN/a/local", "b": "$RUN/b/local"}
}
EOF
  mv "$STATE/servers.json.tmp" "$STATE/servers.json"
  UP_OK=1
  log "up: ${HN[a]} on 127.0.0.1:${SSH_PORT[a]}, ${HN[b]} on 127.0.0.1:${SSH_PORT[b]}"
  cat "$STATE/servers.json"
}

ns_ids() { [[ -f $RUN/ns.ids ]] && cat "$RUN/ns.ids"; local f; for f in "$NSD"/*.{net,uts,mnt}; do
  [[ -e $f ]] && stat -L -c '%i' "$f" 2>/dev/null | sed "s/^/${f##*.}:[/; s/\$/]/"; done; true; }
pids_in_ns() {  # every process in one of our namespaces (libvirtd, virtlogd, sshd, QEMU, ...)
  local ids; ids=$(ns_ids | sort -u | tr '\n' ' ')
  [[ -n ${ids// /} ]] || return 0
  # find fails on processes that vanish or hide their ns (pid 1): not an error here.
  { find /proc/[0-9]*/ns/ -maxdepth 1 \( -name net -o -name mnt -o -name uts \) -printf '%h %l\n' 2>/dev/null || true; } \
    | awk -v ids=" $ids" -v self=$$ '$2 != "" && index(ids, " " $2 " ") { split($1, p, "/"); if (p[3] != self && p[3] != 1) print p[3] }' \
    | sort -u
}

cmd_down() {
  local f pid pids i
  for f in "$RUN"/socat-*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    # Only our listener (a recycled pid is someone else's).
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^socat TCP-LISTEN.*$NSD"; then kill "$pid" 2>/dev/null || true; fi
    rm -f "$f"
  done
  for i in $(seq 1 30); do
    pids=$(pids_in_ns)
    [[ -z $pids ]] && break
    if (( i < 15 )); then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
    sleep 0.2
  done
  pids=$(pids_in_ns); [[ -z $pids ]] || die "processes left in the namespaces: $pids"
  for f in "$NSD"/*.{net,uts,mnt}; do grep -q " $f " /proc/self/mountinfo && umount "$f"; done
  grep -q " $NSD " /proc/self/mountinfo && umount "$NSD"
  if grep -q " $RUN" /proc/self/mountinfo; then die "mounts left: $(grep " $RUN" /proc/self/mountinfo)"; fi
  rm -rf "$RUN" "$STATE/shared" "$STATE/servers.json"
  rm -rf "${STATE:?}/local"/* 2>/dev/null || true
  log "down: no processes, mounts or namespaces left"
}

cmd_status() {
  if ! is_up; then echo "down"; return 0; fi
  local s p
  for s in "${SERVERS[@]}"; do
    echo "== $s: $(nsx "$s" hostname) ${IP[$s]}"
    virsh -q -c "$(sock_uri "$s")" list --all || true
  done
  echo "processes:"; for p in $(pids_in_ns); do echo "  $p $(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-100)"; done
}

# crash <s>: SIGKILL the libvirtd and QEMU processes of server s (its virtlockd and sshd stay:
# a server whose hypervisor died; the guests' leases free with their QEMU). revive <s>: libvirtd again.
cmd_crash() {
  local s=$1
  nsx "$s" sh -c 'me=$(readlink /proc/self/ns/net)
    for p in $(pgrep -x libvirtd) $(pgrep -x qemu-system-x86); do
      [ "$(readlink /proc/$p/ns/net)" = "$me" ] && kill -KILL "$p"
    done; true'
}
cmd_revive() { nsx "$1" libvirtd -d; wait_for 30 virsh -c "$(sock_uri "$1")" version || die "libvirtd of $1 did not come back"; }

# cut <s>: the manager loses server s (its SSH forwarder and every connection through it go,
# the link between the servers goes down) while everything on s keeps running. restore <s>: back.
cmd_cut() {
  local s=$1 f=$RUN/socat-$1.pid pid
  nsenter --net="$NSD/$s.net" ip link set "veth-$s" down
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^socat TCP-LISTEN.*$NSD"; then
    kill $(pgrep -P "$pid") "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
cmd_restore() {
  local s=$1 p
  nsenter --net="$NSD/$s.net" ip link set "veth-$s" up
  p=$(sed -n "s/.*\"$s\": {[^}]*\"ssh_port\": \([0-9]*\).*/\1/p" "$STATE/servers.json")
  [[ -n $p ]] || die "no ssh port of $s in $STATE/servers.json"
  setsid socat TCP-LISTEN:"$p",bind=127.0.0.1,reuseaddr,fork \
    EXEC:"nsenter --net=$NSD/$s.net socat STDIO TCP\:${IP[$s]}\:22",nofork </dev/null >/dev/null 2>&1 &
  echo $! >"$RUN/socat-$s.pid"
  wait_for 10 bash -c "echo >/dev/tcp/127.0.0.1/$p" || die "forwarder of $s not listening on $p"
}

case ${1:-} in
  up) cmd_up ;;
  crash|revive|cut|restore) is_up || die "not up"; c=$1; s=${2:?server}; [[ $s == a || $s == b ]] || die "server a or b"; "cmd_$c" "$s" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  virsh) s=${2:?server}; shift 2; virsh -c "$(sock_uri "$s")" "$@" ;;
  sh) s=${2:?server}; shift 2; nsx "$s" "${@:-bash}" ;;
  *) echo "usage: $0 up|down|status|crash|revive|cut|restore <a|b>|virsh <a|b> [args]|sh <a|b> [cmd]" >&2; exit 2 ;;
esac
