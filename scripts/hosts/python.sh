#!/usr/bin/env bash
# Python host: builds the pyomendb wheel (bindings/python; setup.py builds
# libomendb.so with cargo and puts it in the wheel), installs it in a fresh
# virtualenv and runs bindings/python/tests there, from an empty directory,
# so the tests see the installed package and not the sources.
# The test dependencies (numpy, pytest, tqdm, mypy; setuptools for the build)
# live in a venv under $CACHE made once; the fresh venv sees them through a
# .pth file, so a run costs no download.
# Usage: scripts/hosts/python.sh [pytest args...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
python_deps_venv
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log "building the pyomendb wheel"
"$PY_DEPS/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
  -w "$WORK/dist" "$ROOT/bindings/python"
WHEEL="$(ls "$WORK"/dist/pyomendb-*.whl)"
log "installing $(basename "$WHEEL") in a fresh venv"
python3 -m venv --without-pip "$WORK/venv"
site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site "$PY_DEPS/bin/python" > "$(site "$WORK/venv/bin/python")/test-deps.pth"
# --no-index: the wheel's dependencies must already be there (numpy, seen
# through the .pth file).
"$PY_DEPS/bin/pip" --python "$WORK/venv/bin/python" install -q --disable-pip-version-check \
  --no-index "$WHEEL"

log "python tests against the installed wheel"
mkdir "$WORK/run"
cd "$WORK/run"
# Typed as installed: mypy finds the package through its py.typed marker.
"$WORK/venv/bin/python" -m mypy --strict --cache-dir "$CACHE/mypy-cache" -p pyomendb
"$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider --import-mode=importlib \
  "$ROOT/bindings/python/tests" "$@"
