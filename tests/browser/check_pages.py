"""Open every page of the built book in headless Chromium, offline, and check what a reader sees.

    python3 book.py browser        # after python3 book.py build; .ci/run does both

Fails (exit 1) if any page has a console error, an image that does not load, an internal link or
anchor that does not resolve, an equation left as raw TeX or a MathJax error, role markup left
unprocessed or a bare label where a number belongs (a caption given in cell metadata prints
"eq-dw-share" for {eq}`eq-dw-share`), an empty code output
where the notebook has one, or a code or output block that scrolls sideways in a 1280-pixel window.
The book is served from 127.0.0.1; every request that would leave the
machine is refused, except MathJax, which is answered from the npm package installed next to this file
(`npm ci --prefix tests/browser`). Chromium is Debian's (/usr/bin/chromium), never a downloaded one.
Screenshots of the landing page and of each chapter's first screen (and one in dark mode) are saved in
_build/screenshots/. A summary line reports pages, equations typeset, images and links checked.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
MATHJAX = Path(__file__).resolve().parent / "node_modules" / "mathjax"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Anchors(HTMLParser):
    """Every id (and name) a page defines."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def anchors_of(path: Path) -> frozenset[str]:
    parser = Anchors()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def pages() -> list[Path]:
    skip = {"_static", "_sources", "_images", "screenshots", "reports"}
    return sorted(p for p in HTML.rglob("*.html") if not skip & set(p.relative_to(HTML).parts))


def notebook_outputs(page: Path) -> int | None:
    """How many code cells of the page's notebook show an output (None for pages that are not notebooks)."""
    notebook = ROOT / page.relative_to(HTML).with_suffix(".ipynb")
    if not notebook.exists():
        return None
    cells = json.loads(notebook.read_text())["cells"]

    def shown(output) -> bool:
        # a glued value (MyST-NB's glue with display=False) is stored, not shown where the cell is
        data = output.get("data", {})
        return not (data and all(key.startswith("application/papermill.record/") for key in data))

    return sum(1 for c in cells if c["cell_type"] == "code" and any(shown(o) for o in c.get("outputs", []))
               and not {"remove-output", "remove-cell"} & set(c.get("metadata", {}).get("tags", [])))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve() -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


CHECK_PAGE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const visible = (el) => !el.closest('pre, code, .highlight, mjx-container, script, style, .headerlink');
  // text nodes outside code that still look like TeX: a backslash command or display dollars
  const walker = document.createTreeWalker(document.querySelector('article') || document.body, NodeFilter.SHOW_TEXT);
  const rawTex = [];
  const rawMarkup = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && visible(node.parentElement) && /\\\\[a-zA-Z]{2,}|\\$\\$|\\\\\\(|\\\\\\[/.test(node.textContent)) {
      rawTex.push(node.textContent.trim().slice(0, 80));
    }
    // role or directive markup that was not processed ({eq}`...`, {glue:text}`...`, :::), and a bare
    // label where a role should have put a number (a caption in cell metadata prints "eq-dw-share")
    if (node.parentElement && visible(node.parentElement) &&
        /\\{[a-z:-]+\\}`|^\\s*:::|\\b(eq|fig|tab)-[a-z0-9]+(-[a-z0-9]+)+\\b/.test(node.textContent)) {
      rawMarkup.push(node.textContent.trim().slice(0, 80));
    }
  }
  const cells = Array.from(document.querySelectorAll('div.cell'));
  return {
    equations: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    rawTex: rawTex,
    rawMarkup: rawMarkup,
    images: Array.from(document.images).map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    blocks: Array.from(document.querySelectorAll('pre')).filter(p => p.offsetParent !== null).length,
    outputs: cells.filter(c => { const o = c.querySelector('.cell_output');
                                 return o && (o.innerText.trim().length > 0 || o.querySelector('img, table, svg')); }).length,
    sideways: Array.from(document.querySelectorAll('pre')).filter(
      p => p.offsetParent !== null && p.scrollWidth > p.clientWidth + 1).map(
      p => p.innerText.split(String.fromCharCode(10)).reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 60)),
    emptyOutputs: cells.filter(c => { const o = c.querySelector('.cell_output');
                                      return o && o.innerText.trim().length === 0 && !o.querySelector('img, table, svg'); }).length,
  };
}"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not HTML.joinpath("index.html").exists():
        sys.exit("browser check: no built book in _build/html; run `python3 book.py build` first")
    if not MATHJAX.joinpath("es5", "tex-mml-chtml.js").exists():
        sys.exit("browser check: MathJax is missing; run `npm ci --prefix tests/browser`")
    if not Path(CHROMIUM).exists():
        sys.exit(f"browser check: {CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    server, base = serve()
    problems: list[str] = []
    totals = {"pages": 0, "equations": 0, "images": 0, "links": 0, "outputs": 0, "blocks": 0}
    refused: set[str] = set()

    def route(route):
        url = route.request.url
        if url.startswith(base):
            return route.continue_()
        if url.startswith(MATHJAX_CDN):
            local = MATHJAX / urlparse(url).path.split("/mathjax@3/", 1)[1]
            return route.fulfill(path=str(local)) if local.is_file() else route.abort()
        refused.add(url)
        return route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", route)
        for path in pages():
            name = str(path.relative_to(HTML))
            redirect = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', path.read_text(errors="replace"), re.I)
            if redirect:  # index.html only sends the reader on to the landing page
                totals["links"] += 1
                if not (path.parent / redirect.group(1)).is_file():
                    problems.append(f"{name}: redirects to a missing page {redirect.group(1)}")
                continue
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda message, errors=errors: errors.append(message.text)
                    if message.type == "error" else None)
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            page.goto(base + name, wait_until="load")
            result = page.evaluate(CHECK_PAGE_JS)
            totals["pages"] += 1
            totals["equations"] += result["equations"]
            problems += [f"{name}: console error: {e}" for e in errors]
            if result["mathErrors"]:
                problems.append(f"{name}: {result['mathErrors']} MathJax error(s)")
            problems += [f"{name}: raw TeX on the page: {t!r}" for t in result["rawTex"]]
            problems += [f"{name}: role markup or a bare label on the page: {t!r}"
                         for t in result["rawMarkup"]]
            problems += [f"{name}: a code or output block scrolls sideways at 1280 px: {line!r}"
                         for line in result["sideways"]]
            totals["blocks"] += result["blocks"]
            for image in result["images"]:
                totals["images"] += 1
                if not image["ok"]:
                    problems.append(f"{name}: image does not load: {image['src']}")
            for link in result["links"]:
                target, fragment = urldefrag(link)
                if not target.startswith(base):
                    continue  # external links are not followed offline
                totals["links"] += 1
                file = HTML / unquote(target[len(base):] or "index.html")
                if file.is_dir():
                    file = file / "index.html"
                if not file.is_file():
                    problems.append(f"{name}: broken link {link}")
                elif fragment and file.suffix == ".html" and unquote(fragment) not in anchors_of(file):
                    problems.append(f"{name}: link to a missing anchor {link}")
            expected = notebook_outputs(path)
            if expected is not None:
                totals["outputs"] += result["outputs"]
                if result["emptyOutputs"] or result["outputs"] < expected:
                    problems.append(f"{name}: {result['outputs']} non-empty code outputs "
                                    f"({result['emptyOutputs']} empty) where the notebook has {expected}")
            if name in ("intro.html",) or name.startswith("chapters/"):
                page.screenshot(path=str(SHOTS / (name.replace("/", "_").replace(".html", ".png"))))
            page.close()
        dark = context.new_page()  # one chapter with figures, in dark mode, to look at
        dark.add_init_script("localStorage.setItem('theme', 'dark'); localStorage.setItem('mode', 'dark');")
        dark.goto(base + "chapters/03_depthwise_separable_cost.html", wait_until="load")
        dark.evaluate("document.querySelector('#fig-dsc-ratio-map, figure') && "
                      "document.querySelector('#fig-dsc-ratio-map, figure').scrollIntoView()")
        dark.screenshot(path=str(SHOTS / "dark_mode_figure.png"))
        unreadable = dark.evaluate("""() => {
            if (document.documentElement.dataset.theme !== 'dark') return ['not in dark mode'];
            return [...document.querySelectorAll('div.cell_output img, figure img')]
                .filter(img => getComputedStyle(img).backgroundColor !== 'rgb(255, 255, 255)')
                .map(img => img.getAttribute('src'));
        }""")
        for source in unreadable:
            problems.append(f"dark mode: figure {source} has no white ground")
        browser.close()
    server.shutdown()

    for problem in problems[:60]:
        print(problem)
    if len(problems) > 60:
        print(f"... and {len(problems) - 60} more")
    print(f"browser check: {totals['pages']} pages, {totals['equations']} equations typeset, "
          f"{totals['images']} images, {totals['links']} internal links, {totals['outputs']} code outputs, "
          f"{totals['blocks']} visible code and output blocks (none scrolls sideways at 1280 px); "
          f"{len(refused)} outside request(s) refused; screenshots in _build/screenshots/; "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
