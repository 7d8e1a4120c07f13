# Shared by the host scripts: paths, library check, apt helper. Source it.
# Environment:
#   OMENDB_LIB_DIR      directory holding an already built libomendb.so (default target/release)
#   OMENDB_INCLUDE_DIR  directory holding omendb.h (default include/)
#   OMENDB_HOSTS_CACHE  where venvs and caches go (default target/hosts)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB_DIR="${OMENDB_LIB_DIR:-$ROOT/target/release}"
INC_DIR="${OMENDB_INCLUDE_DIR:-$ROOT/include}"
CACHE="${OMENDB_HOSTS_CACHE:-$ROOT/target/hosts}"

die() { echo "error: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

need_lib() {
  [ -d "$LIB_DIR" ] || die "OMENDB_LIB_DIR=$LIB_DIR does not exist (build with: cargo build --release)"
  LIB_DIR="$(cd "$LIB_DIR" && pwd)"
  [ -f "$LIB_DIR/libomendb.so" ] || die "no libomendb.so in $LIB_DIR (build with: cargo build --release)"
}

need_header() {
  [ -f "$INC_DIR/omendb.h" ] || die "no omendb.h in $INC_DIR (set OMENDB_INCLUDE_DIR)"
  INC_DIR="$(cd "$INC_DIR" && pwd)"
}

# install_prefix: installs the library of LIB_DIR into a prefix outside
# the repository as `make install-lib` lays it out (lib/, include/,
# lib/pkgconfig/omendb.pc) and points PKG_CONFIG_PATH and LD_LIBRARY_PATH
# at it, so that a binding builds and runs against an installed library
# (pkg-config), not against the build tree. Sets PREFIX. The prefix is the
# same on every run for one checkout (Go's build cache keeps the -L path
# pkg-config gave when a package was compiled, so a fresh temporary
# prefix each run would leave cached packages pointing at a removed one);
# it is emptied and installed afresh each time.
install_prefix() {
  command -v pkg-config >/dev/null || apt_install pkg-config
  PREFIX="${TMPDIR:-/tmp}/omendb-prefix-$(id -u)-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
  rm -rf "$PREFIX"
  make -s -C "$ROOT" install-lib PREFIX="$PREFIX" BUILT_LIB_DIR="$LIB_DIR" >/dev/null
  export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

_apt_updated=""
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  if [ -z "$_apt_updated" ]; then
    $sudo apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

# A python3 that can make venvs (Debian splits venv/ensurepip out).
need_python_venv() {
  command -v python3 >/dev/null || apt_install python3 python3-venv
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
}

# make_venv DIR PACKAGES... : create DIR as a venv with PACKAGES, unless a
# previous run already did (marker file lists the packages).
make_venv() {
  local dir="$1"; shift
  local want="$*"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.omendb-packages" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  need_python_venv
  log "creating venv $dir with: $want"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$want" > "$dir/.omendb-packages"
}

# The venv of the Python host's tests and benchmark: pyomendb's dependency
# (numpy), its test tools (pytest, tqdm, mypy) and what builds its wheel.
# Sets PY_DEPS.
python_deps_venv() {
  PY_DEPS="$CACHE/pyvenv"
  make_venv "$PY_DEPS" numpy pytest tqdm mypy "setuptools>=77"
}
