"""The installed package: its own library, the lookup order, its metadata,
and the documentation's quickstarts (run as written).

Run against the installed wheel (scripts/hosts/python.sh).
"""

import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import pyomendb

PKG_DIR = Path(pyomendb.__file__).resolve().parent
BUNDLED = PKG_DIR / "libomendb.so"
BINDING_DIR = Path(__file__).resolve().parents[1]  # bindings/python
REPO = BINDING_DIR.parents[1]


def run_python(code, cwd, **env):
    """Runs ``code`` in a fresh interpreter with the test environment minus
    the library variables, plus ``env``; returns its stdout (asserts exit 0)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMENDB_LIB", "LD_LIBRARY_PATH", "PYTHONPATH")}
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=clean,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


@pytest.fixture
def bare_copy(tmp_path):
    """pyomendb's Python files alone (no library of its own), as in a source
    checkout: the directory to put on PYTHONPATH."""
    root = tmp_path / "bare"
    shutil.copytree(PKG_DIR, root / "pyomendb",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return root


PRINT_LIB = "import pyomendb; print(pyomendb.library_path()); assert pyomendb.version()"


def test_installed_package_carries_its_library():
    # These tests must exercise the installed wheel, not the source tree.
    assert BINDING_DIR / "src" not in PKG_DIR.parents, PKG_DIR
    assert BUNDLED.is_file()
    assert (PKG_DIR / "py.typed").is_file()
    assert pyomendb.library_path() == str(BUNDLED)


def test_wheel_is_platform_specific_and_versioned_with_the_library():
    dist = metadata.distribution("pyomendb")
    wheel = dist.read_text("WHEEL")
    assert "Root-Is-Purelib: false" in wheel
    tags = re.findall(r"^Tag: (\S+)$", wheel, re.M)
    assert tags and all(re.fullmatch(r"py3-none-(?!any$)\w+", t) for t in tags), tags
    assert dist.version == pyomendb.version()
    assert any(str(f).endswith("pyomendb/libomendb.so") for f in dist.files)


def test_own_library_comes_before_omendb_lib(tmp_path):
    out = run_python(PRINT_LIB, tmp_path, OMENDB_LIB=str(tmp_path / "elsewhere.so"))
    assert out == str(BUNDLED)


def test_without_its_own_library_omendb_lib_is_used(tmp_path, bare_copy):
    out = run_python(PRINT_LIB, tmp_path, PYTHONPATH=str(bare_copy), OMENDB_LIB=str(BUNDLED))
    assert out == str(BUNDLED)


def test_then_the_system_library(tmp_path, bare_copy):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "libomendb.so.0").symlink_to(BUNDLED)  # the soname `make install` lays out
    code = PRINT_LIB + "\nwith pyomendb.Store.open('s', dim=4, create=True) as s: print(len(s))"
    out = run_python(code, tmp_path, PYTHONPATH=str(bare_copy), LD_LIBRARY_PATH=str(libdir))
    assert out.splitlines() == ["libomendb.so.0", "0"]


def test_no_library_anywhere_says_how_to_get_one(tmp_path, bare_copy):
    code = ("import pyomendb\ntry:\n    pyomendb.version()\nexcept OSError as e:\n"
            "    print('OSError', e)\nelse:\n    print('loaded', pyomendb.library_path())")
    out = run_python(code, tmp_path, PYTHONPATH=str(bare_copy))
    if ctypes.util.find_library("omendb"):  # this machine has one installed
        assert out.startswith("loaded libomendb.so"), out
    else:
        assert out.startswith("OSError libomendb not found") and "OMENDB_LIB" in out, out


def test_a_library_missing_functions_is_refused_by_name(tmp_path, bare_copy):
    libm = ctypes.util.find_library("m")
    assert libm
    code = "import pyomendb\ntry:\n    pyomendb.version()\nexcept OSError as e:\n    print(e)"
    out = run_python(code, tmp_path, PYTHONPATH=str(bare_copy), OMENDB_LIB=libm)
    # Said as such, not as a library that is missing.
    assert out.startswith(libm + " has no omen_options_default: the library is older than"), out


def test_load_library_with_a_path(tmp_path, bare_copy):
    code = "\n".join([
        "import pyomendb",
        "try:",
        "    pyomendb.load_library(%r)" % str(tmp_path / "absent.so"),
        "except OSError as e:",
        "    print('absent:', e)",
        "pyomendb.load_library(%r)" % str(BUNDLED),
        "print(pyomendb.library_path())",
        "try:",
        "    pyomendb.load_library(%r)" % str(tmp_path / "other.so"),
        "except RuntimeError as e:",
        "    print('switch:', e)",
    ])
    out = run_python(code, tmp_path, PYTHONPATH=str(bare_copy)).splitlines()
    assert out[0].startswith("absent: no library at")
    assert out[1] == str(BUNDLED)
    assert out[2] == "switch: libomendb is already loaded from %s" % BUNDLED


# ------------------------------------------------------------ documentation


def python_block(markdown, after=None):
    """The first ```python block of ``markdown`` (after the heading ``after``)."""
    text = markdown.read_text()
    if after is not None:
        text = text[text.index(after):]
    m = re.search(r"^```python\n(.*?)^```", text, re.M | re.S)
    assert m, "no python block in %s" % markdown
    return m.group(1)


@pytest.mark.parametrize("doc, after", [
    (BINDING_DIR / "README.md", None),
    (REPO / "docs" / "hosts.md", "### Python"),
], ids=["README", "hosts.md"])
def test_quickstart_runs_as_written(tmp_path, doc, after):
    # In a fresh interpreter and an empty directory: nothing but the
    # installed package and what the block itself imports.
    run_python(python_block(doc, after), tmp_path)
