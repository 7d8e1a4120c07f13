"""Build hook of the pyomendb wheel (the metadata is in pyproject.toml).

ctypes needs no compiled extension, but the wheel carries the library it
loads: build_py runs ``cargo build --release`` in the workspace two levels up
and copies ``libomendb.so`` into the package. The wheel is then tagged
``py3-none-<platform>``: any Python 3, no Python ABI, one platform.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the cargo workspace
# The shared library's file name, as cargo writes it and as pyomendb loads it.
LIB_NAME = {"darwin": "libomendb.dylib", "win32": "omendb.dll"}.get(sys.platform, "libomendb.so")


def check_workspace():
    if not (ROOT / "crates" / "omendb-capi" / "Cargo.toml").is_file():
        raise SystemExit(
            "pyomendb builds libomendb from the OmenDB workspace at %s, which is not "
            "there: build from a checkout of the repository (pip wheel ./bindings/python), "
            "not from an sdist or a copy of bindings/python" % ROOT
        )


def workspace_version():
    """The [workspace.package] version of Cargo.toml: one version for the
    engine, the C library and this binding."""
    check_workspace()
    text = (ROOT / "Cargo.toml").read_text()
    section = re.search(r"^\[workspace\.package\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    version = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    if not version:
        raise RuntimeError("no [workspace.package] version in %s" % (ROOT / "Cargo.toml"))
    return version.group(1)


def build_library():
    """Builds the C library (release) and returns its path."""
    check_workspace()
    cargo = os.environ.get("CARGO", "cargo")
    # The same command as `make lib`: building every member's library keeps
    # the dependencies' features the same as the rest of the build, so an
    # already built target/release is reused, not rebuilt.
    subprocess.run([cargo, "build", "--release", "--workspace", "--lib"], cwd=ROOT, check=True)
    meta = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    lib = Path(json.loads(meta.stdout)["target_directory"]) / "release" / LIB_NAME
    if not lib.is_file():
        raise RuntimeError("cargo built no %s" % lib)
    return lib


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "pyomendb" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_library(), dest)
        dest.chmod(0o755)


class DistributionWithLibrary(Distribution):
    def has_ext_modules(self):
        # The bundled library is native code: the package installs into
        # platlib and the wheel is not pure (root_is_pure = False).
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=workspace_version(),
    distclass=DistributionWithLibrary,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    # Intermediate files under the workspace's target/, not beside the sources.
    options={"build": {"build_base": str(ROOT / "target" / "pyomendb-build")}},
)
