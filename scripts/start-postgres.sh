#!/usr/bin/env bash
# Starts the Debian PostgreSQL cluster and creates the ovmweb role (CI and local use).
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q online; then
  pg_lsclusters -h | grep -q . || pg_createcluster "$ver" main >/dev/null
  pg_ctlcluster "$ver" main start
fi
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='ovmweb'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE ovmweb LOGIN SUPERUSER PASSWORD 'ovmweb'\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='ovmweb'\"" | grep -q 1 \
  || su postgres -c "createdb -O ovmweb ovmweb"
echo "postgresql $ver up"
