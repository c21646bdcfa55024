#!/usr/bin/env bash
# Until the first release the schema is one initial migration per app: regenerate it.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f ovmweb/{inventory,jobs,consoles}/migrations/0*.py
.venv/bin/python manage.py makemigrations inventory jobs consoles >/dev/null
echo "migrations regenerated"
