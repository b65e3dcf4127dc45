"""Open every chapter notebook in JupyterLab (with jupyterlab-myst), in headless Chromium, offline,
and check that its prose reads as it does in the HTML book.

    python3 book.py browser        # runs this after the page check (tests/browser/check_pages.py)
    .venv/bin/python tests/browser/check_lab.py chapters/01_convolution.ipynb   # some notebooks

JupyterLab is the book's environment's own (`jupyter lab`, as `python3 book.py lab` starts it),
served on 127.0.0.1 with a throw-away settings folder (every cell rendered at once, no news); every
request that would leave the machine is refused. Fails (exit 1) if a notebook's markdown cells do not
all render, or if rendered prose shows role or directive markup ({glue:text}`...`, {eval}`...`,
:::), an {eval} expression that was not evaluated (jupyterlab-myst then prints the expression), a
number still to be computed, or an error; and it runs one notebook from the top, as a reader does
("Run All"): every cell must succeed and the prose keep its numbers. A screenshot of each notebook's first screen is saved in
_build/screenshots/lab_*.png. Chromium is Debian's (/usr/bin/chromium), never a downloaded one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"
SHOTS = ROOT / "_build" / "screenshots"
JUPYTER = Path(sys.executable).parent / "jupyter"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_pages import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

# what a reader must never see in rendered prose
RAW = re.compile(r"\{[a-z:-]+\}`|^\s*:::|glued\(|\[computed below\]", re.M)
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
# notebooks also run from the top, as a reader runs them ("Run All"): every code cell must succeed
# and the prose must still show its numbers. (jupyterlab-myst 2.7.0 keeps the stored text then; a
# markdown cell it evaluates asks the kernel for dsc_utils.glued(...), which every page imports.)
RUN_ALL = ["04-3_groups_and_variants.ipynb"]
RUN_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  let pending = 0, errors = 0;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    if (cell.executionCount === null) pending += 1;
    for (let j = 0; j < cell.outputs.length; j++) {
      if (cell.outputs.get(j).type === 'error') errors += 1;
    }
  }
  const session = panel.sessionContext.session;
  return {pending: pending, errors: errors,
          busy: !session || !session.kernel || session.kernel.status !== 'idle'};
}"""
RENDERED_JS = """() => {
  const cells = Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell'));
  return {cells: cells.length,
          rendered: cells.filter(c => c.querySelector('.myst')).length,
          errors: document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell ' +
                                            '[data-mime-type="application/vnd.jupyter.stderr"]').length,
          texts: cells.map(c => { const m = c.querySelector('.myst'); return m ? m.innerText : ''; })};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def markdown_cells(path: Path) -> int:
    return sum(1 for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")


def run_all(page, name: str) -> list[str]:
    """Run every cell from the top in the page's kernel, as a reader does: no code cell may fail, and
    the prose must still show its numbers (no failed expression, no expression left as text)."""
    deadline = time.monotonic() + 120                  # the kernel starts with the page
    while time.monotonic() < deadline and page.evaluate(RUN_STATE_JS)["busy"]:
        time.sleep(0.5)
    # cleared first, so that a cell that has not run yet has no execution count
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = {"pending": 1, "errors": 0, "busy": True}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (state["pending"] or state["busy"]):
        time.sleep(1)
        state = page.evaluate(RUN_STATE_JS)
    time.sleep(2)                                   # the last inline expressions render
    result = page.evaluate(RENDERED_JS)
    problems = []
    if state["pending"] or state["busy"]:
        problems.append(f"{name}, run from the top: {state['pending']} code cells did not run")
    if state["errors"]:
        problems.append(f"{name}, run from the top: {state['errors']} code cells failed")
    if result["errors"]:
        problems.append(f"{name}, run from the top: {result['errors']} inline expression(s) failed")
    for number, text in enumerate(result["texts"]):
        if "glued(" in text:
            problems.append(f"{name}, run from the top: markdown cell {number} shows an expression")
    print(f"lab check: {name} run from the top in JupyterLab: {len(result['texts'])} markdown "
          f"cells, {len(problems)} problem(s)")
    return problems


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        sys.exit(f"lab check: {CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    notebooks = [Path(a).resolve() for a in sys.argv[1:]] or sorted(CHAPTERS.glob("*.ipynb"))
    scratch = Path(tempfile.mkdtemp(prefix="dsc-lab-"))
    for name, value in SETTINGS.items():
        (scratch / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / "settings" / name).write_text(json.dumps(value))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(scratch / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(scratch / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(scratch / "runtime"))
    port = free_port()
    server = subprocess.Popen(
        [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={ROOT}",
         "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
         f"--FileCheckpoints.checkpoint_dir={scratch / 'checkpoints'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    problems: list[str] = []
    refused: set[str] = set()
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)

        def route(route):
            if route.request.url.startswith(base):
                return route.continue_()
            refused.add(route.request.url)
            return route.abort()

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", route)
            for path in notebooks:
                name = path.name
                expected = markdown_cells(path)
                page = context.new_page()
                where = path.relative_to(ROOT).as_posix()
                page.goto(f"{base}lab/workspaces/check-{path.stem}/tree/{where}?reset",
                          wait_until="load")
                result = {"cells": 0, "rendered": 0, "errors": 0, "texts": []}
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    result = page.evaluate(RENDERED_JS)
                    if result["cells"] >= expected and result["rendered"] >= expected:
                        break
                    time.sleep(0.5)
                time.sleep(1)                       # inline expressions render after their cell
                result = page.evaluate(RENDERED_JS)
                if result["rendered"] < expected:
                    problems.append(f"{name}: {result['rendered']} of {expected} markdown cells rendered")
                if result["errors"]:
                    problems.append(f"{name}: {result['errors']} inline expression(s) failed")
                for number, text in enumerate(result["texts"]):
                    for match in RAW.finditer(text):
                        around = text[max(0, match.start() - 30):match.end() + 30].replace("\n", " ")
                        problems.append(f"{name}: markdown cell {number} shows {around!r}")
                page.screenshot(path=str(SHOTS / f"lab_{path.stem}.png"))
                if name in RUN_ALL:
                    problems += run_all(page, name)
                page.close()
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    for problem in problems[:60]:
        print(problem)
    print(f"lab check: {len(notebooks)} notebooks opened in JupyterLab with jupyterlab-myst; "
          f"{len(refused)} outside request(s) refused; screenshots in _build/screenshots/lab_*.png; "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
