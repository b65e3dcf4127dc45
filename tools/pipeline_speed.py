"""Time the book's pipeline the way the README reports it: `python3 tools/pipeline_speed.py`.

Runs, after the environment exists: the test command, a clean build (``_build/`` removed first) and a
rebuild with nothing changed, each REPEAT times, and prints the median wall-clock time of each next
to its budget (90 s, 120 s, 15 s on the 2-core reference machine). Exits 1 if a median is over budget.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 3
STEPS = [  # (name, command, budget in seconds, clean _build first)
    ("all tests", [sys.executable, "book.py", "test", "-q"], 90, False),
    ("clean build", [sys.executable, "book.py", "build"], 120, True),
    ("rebuild, nothing changed", [sys.executable, "book.py", "build"], 15, False),
]


def timed(command: list[str], clean: bool) -> float:
    if clean:
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:  # its output, kept in memory so that the timing writes no file
        print(result.stdout[-20000:], file=sys.stderr)
        sys.exit(f"{' '.join(command[1:])} failed (exit {result.returncode}): its output is above")
    return elapsed


def main() -> int:
    subprocess.run([sys.executable, "book.py", "test", "--version"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # create or refresh .venv outside the timings
    over = 0
    print(f"{'step':<26} {'median':>8} {'budget':>7}   runs")
    for name, command, budget, clean in STEPS:
        runs = [timed(command, clean) for _ in range(REPEAT)]
        median = statistics.median(runs)
        over += median > budget
        print(f"{name:<26} {median:7.1f}s {budget:6d}s   " + ", ".join(f"{r:.1f}" for r in runs), flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
