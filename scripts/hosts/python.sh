#!/usr/bin/env bash
# Python host: ctypes binding tests (bindings/python) against an already built
# libomendb.so. Installs numpy + pytest into a venv under target/hosts/ once.
# Usage: scripts/hosts/python.sh [pytest args...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_lib
VENV="$CACHE/pyvenv"
make_venv "$VENV" numpy pytest
log "python tests against $LIB_DIR/libomendb.so"
cd "$ROOT"
OMENDB_LIB="$LIB_DIR/libomendb.so" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  bindings/python/test_omendb.py "$@"
