#!/usr/bin/env bash
# Starts what the tests and the embedded default need (filled in by the servers work).
set -euo pipefail
