#!/usr/bin/env bash
# Builds the tiny guest (filled in by the servers work).
set -euo pipefail
