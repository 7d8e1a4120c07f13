# Sourced by compare.sh and ann.sh (from the repository root): creates, once,
# the benchmark virtualenv target/bench-venv with numpy, faiss-cpu, usearch and
# matplotlib from PyPI, plus hnswlib where it installs (it builds from source
# on some platforms; ann_curves.py skips it when absent). Sets $VENV.
VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import numpy, faiss, usearch, matplotlib" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q numpy faiss-cpu usearch matplotlib
    "$VENV/bin/pip" install -q hnswlib || echo "hnswlib did not install: its curves are skipped" >&2
fi
