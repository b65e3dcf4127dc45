"""Check that every pin of requirements.txt has a file that installs on each promised Python and OS.

    python3 tools/check_pins.py            # every target below
    python3 tools/check_pins.py 3.11.2     # only the targets of that Python

It needs no other interpreter: for each target, pip resolves every pin (no dependencies, wheels or, for
the few packages without one, a source archive) as that Python on that platform would, without
installing anything. torch is left out: on Linux the book takes its CPU build (see the README); on
macOS and Windows the registry's torch==2.13.0 is the CPU build already.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINUX = ["manylinux_2_36_x86_64", "manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
         "manylinux2014_x86_64", "linux_x86_64"]
MACOS_ARM = [f"macosx_{v}_0_arm64" for v in (15, 14, 13, 12, 11)] + ["macosx_11_0_universal2"]
WINDOWS = ["win_amd64"]
# (Python version, platform tags): the oldest Python the README promises (Debian 12's own 3.11.2), the
# newer ones, and the other operating systems.
TARGETS = [
    ("3.11.0", LINUX), ("3.11.2", LINUX), ("3.12", LINUX), ("3.13", LINUX),
    ("3.11.2", MACOS_ARM), ("3.13", MACOS_ARM), ("3.11.2", WINDOWS), ("3.13", WINDOWS),
]


def pins() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if "==" in line and not line.startswith(("#", "torch=="))]


def unresolvable(python: str, platforms: list[str], requirements: list[str]) -> list[str]:
    """The pins that pip cannot find a file for, as ``python`` on ``platforms`` would install them."""
    failing: list[str] = []
    remaining = list(requirements)
    while remaining:
        with tempfile.TemporaryDirectory() as target:
            command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                       "--quiet", "--disable-pip-version-check", "--target", target,
                       "--python-version", python, "--only-binary=:all:"]
            for platform in platforms:
                command += ["--platform", platform]
            result = subprocess.run([*command, *remaining], capture_output=True, text=True)
        if result.returncode == 0:
            return failing
        match = re.search(r"for the requirement (\S+)", result.stderr) or re.search(r"found for (\S+)", result.stderr)
        if not match or match.group(1) not in remaining:
            # a package with no wheel at all (source only): try it alone, allowing a source archive
            raise RuntimeError(f"pip failed for Python {python} on {platforms[0]}:\n{result.stderr[-2000:]}")
        failing.append(match.group(1))
        remaining.remove(match.group(1))
    return failing


def source_only_ok(pin: str, python: str) -> bool:
    """A pin with no wheel installs from its source archive if the archive admits ``python``."""
    from packaging.specifiers import SpecifierSet

    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "--quiet", "--disable-pip-version-check", "-d", folder, pin],
                                capture_output=True, text=True)
        archives = list(Path(folder).glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            return False
        import tarfile

        with tarfile.open(archives[0]) as archive:
            info = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("PKG-INFO"))
            text = archive.extractfile(info).read().decode()
    wanted = re.search(r"^Requires-Python: (.+)$", text, re.M)
    return wanted is None or python in SpecifierSet(wanted.group(1))


def main(args: list[str]) -> int:
    targets = [t for t in TARGETS if not args or t[0] in args]
    requirements = pins()
    bad = 0
    for python, platforms in targets:
        failing = unresolvable(python, platforms, requirements)
        failing = [pin for pin in failing if not source_only_ok(pin, python)]
        status = "ok" if not failing else "NO FILE FOR " + ", ".join(failing)
        print(f"Python {python:7} {platforms[0]:24} {len(requirements)} pins: {status}", flush=True)
        bad += bool(failing)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
