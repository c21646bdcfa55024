#!/usr/bin/env bash
# Fuzz the REST API with schemathesis against the running application and fail
# on any server error (5xx). Self-contained: a temporary SQLite database, a
# token user, the app served by `manage.py runovmweb` on a free loopback port.
#
#   bash scripts/schemathesis.sh            # bounded run (20 examples per operation)
#   MAX_EXAMPLES=100 bash scripts/schemathesis.sh
#   PHASES=fuzzing MAX_EXAMPLES=30 bash scripts/schemathesis.sh   # what the test suite runs
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ST=${ST:-.venv/bin/schemathesis}
MAX_EXAMPLES=${MAX_EXAMPLES:-20}
# The coverage phase (boundary and wrong-type values for every parameter) takes
# a few minutes on a small machine; PHASES=fuzzing gives a quicker run.
PHASES=${PHASES:-coverage,fuzzing}

TMP=$(mktemp -d -t ovmweb-schemathesis-XXXXXX)
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

export OVMWEB_VAR_DIR="$TMP"
export OVMWEB_SQLITE_PATH="$TMP/schemathesis.sqlite3"
unset OVMWEB_DATABASE_URL OVMWEB_REDIS_URL
export DJANGO_SETTINGS_MODULE=ovmweb.settings.base
# Queued jobs stay queued: this run is about the HTTP edge, and a fuzzed
# "discover" must not make the machine SSH to random hosts.
export OVMWEB_EMBEDDED_WORKER=false OVMWEB_MONITOR=false
export OVMWEB_HYPERVISOR_URI=test:///default
export OVMWEB_LOG_LEVEL=${OVMWEB_LOG_LEVEL:-WARNING}

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$PY" manage.py migrate --noinput -v 0
TOKEN=$("$PY" manage.py shell -v 0 -c '
from django.contrib.auth import get_user_model
from ovmweb.accounts.tokens import create_token
from ovmweb.inventory import models
user = get_user_model().objects.create_superuser("fuzz", "fuzz@example.com", "fuzz-pw-123")
# A little inventory, so that ids 1.. exist and detail endpoints and actions run their real code.
pool = models.ServerPool.objects.create(name="pool-1")
server = models.Server.objects.create(name="server-1", hostname="127.0.0.1", transport="local", server_pool=pool, status="RUNNING")
repo = models.Repository.objects.create(name="repo-1", kind="SHARED", path="/nonexistent/ovmweb-fuzz")
repo.server_pools.add(pool)
net = models.Network.objects.create(name="net-1", libvirt_network="default")
disk = models.VirtualDisk.objects.create(name="disk-1", repository=repo, volume="disk-1.qcow2", size_bytes=1 << 30)
vm = models.VirtualMachine.objects.create(name="vm-1", server_pool=pool, repository=repo, max_vcpus=4, max_memory_mib=2048)
models.VmDiskSlot.objects.create(vm=vm, slot=0, virtual_disk=disk)
vnic = models.Vnic.objects.create(vm=vm, mac="00:21:f6:00:00:01", network=net)
models.IsoFile.objects.create(name="install.iso", repository=repo, size_bytes=1 << 20)
models.ProcessorCompatibilityGroup.objects.create(name="compat-1")
models.AntiAffinityGroup.objects.create(name="aag-1", server_pool=pool)
models.CloneCustomizer.objects.create(name="cc-1", vm=vm)
appliance = models.VirtualAppliance.objects.create(name="appliance-1", repository=repo)
# An appliance VM (with a disk of its own), so that POST /vms/ with an appliance source reaches vm_create.
appliance_vm = models.VirtualApplianceVm.objects.create(appliance=appliance, name="avm-1")
appliance_vm.disks.add(models.VirtualDisk.objects.create(name="adisk-1", repository=repo, volume="adisk-1.qcow2", size_bytes=1 << 30))
from ovmweb.jobs.services import event_record, job_submit
job_submit(operation="repository.refresh", summary="seed job", user=user, target=repo, params={"repository_id": repo.pk})
event_record(obj=vm, type="seed", text="seed event", user=user)
print(create_token(user=user)[1])
')

"$PY" manage.py runovmweb --bind "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if "$PY" - "$PORT" <<'PYEOF' 2>/dev/null; then break; fi
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
PYEOF
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$TMP/server.log"; echo "server did not start" >&2; exit 2; fi
    sleep 0.2
done

# Every seeded object has id 1: fuzzed bodies then reach the services behind
# the detail endpoints and actions instead of stopping at a 404.
cat >"$TMP/schemathesis.toml" <<'TOML'
[parameters]
"path.id" = 1
"path.slot" = 0
TOML

set +e
"$ST" --config-file "$TMP/schemathesis.toml" run "http://127.0.0.1:$PORT/api/v1/schema/" \
    --header "Authorization: Token $TOKEN" \
    --checks not_a_server_error \
    --max-examples "$MAX_EXAMPLES" \
    --phases "$PHASES" \
    --workers 1 \
    --request-timeout 30 \
    --wait-for-schema 30 \
    --suppress-health-check all \
    --seed 1
STATUS=$?
set -e
if [[ $STATUS -ne 0 ]]; then
    echo "---- server log (last 80 lines) ----"
    tail -n 80 "$TMP/server.log"
fi
exit $STATUS
