"""The whole book as one PDF, offline: `python3 book.py pdf` (after `python3 book.py build`).

Debian's Chromium prints every page of the built book, in the order of _toc.yml, after MathJax has
typeset its equations (MathJax is served from the npm package next to this file; every other request
that would leave the machine is refused). pypdf merges the pages behind a printed table of contents,
with one bookmark per page. The PDF is then read back: it fails (exit 1) unless every page's title
is in its text and no raw TeX is. Writes _build/book.pdf.
"""
from __future__ import annotations

import html
import io
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_pages import (CHROMIUM, CHROMIUM_FLAGS, HTML, MATHJAX, MATHJAX_CDN,  # noqa: E402
                         ROOT, serve)

OUTPUT = ROOT / "_build" / "book.pdf"
RAW_TEX = re.compile(r"\\(frac|begin|end|mathrm|text|left|right|sum|cdot|lVert)\b|\$\$")
PRINT = dict(format="A4", print_background=True,
             margin={"top": "14mm", "bottom": "14mm", "left": "12mm", "right": "12mm"})


def toc_files() -> list[str]:
    """The book's pages in reading order, as paths of the built HTML."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return [f"{name}.html" for name in files]


def contents_page(entries: list[tuple[str, int]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(title)}</td><td class='n'>{page}</td></tr>"
                   for title, page in entries)
    return ("<html><head><style>body{font-family:sans-serif;margin:2em}td{padding:0.25em 1em}"
            ".n{text-align:right}</style></head><body><h1>Contents</h1><table>" + rows +
            "</table></body></html>")


def main() -> int:
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader, PdfWriter

    if not HTML.joinpath("index.html").exists():
        sys.exit("pdf: no built book in _build/html; run `python3 book.py build` first")
    server, base = serve()

    def route(route):
        url = route.request.url
        if url.startswith(base):
            return route.continue_()
        if url.startswith(MATHJAX_CDN):
            local = MATHJAX / url.split("/mathjax@3/", 1)[1].split("?")[0]
            return route.fulfill(path=str(local)) if local.is_file() else route.abort()
        return route.abort()

    printed: list[tuple[str, bytes]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", route)
        for name in toc_files():
            page = context.new_page()
            page.goto(base + name, wait_until="load")
            page.evaluate("async () => { if (window.MathJax && MathJax.startup && "
                          "MathJax.startup.promise) { await MathJax.startup.promise; } }")
            title = page.evaluate("() => (document.querySelector('article h1') || "
                                  "document.querySelector('h1') || {innerText: document.title})"
                                  ".innerText.replace(/#$/, '').trim()")
            page.emulate_media(media="print")
            printed.append((title, page.pdf(**PRINT)))
            page.close()
        counts = [len(PdfReader(io.BytesIO(data)).pages) for _, data in printed]
        first = 1
        contents_pages = 1
        for _ in range(2):          # the contents' own length shifts every page number
            entries, number = [], contents_pages + 1
            for (title, _), count in zip(printed, counts):
                entries.append((title, number))
                number += count
            page = context.new_page()
            page.set_content(contents_page(entries))
            contents = page.pdf(**PRINT)
            page.close()
            contents_pages = len(PdfReader(io.BytesIO(contents)).pages)
        browser.close()
    server.shutdown()

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(contents)))
    for (title, data), (_, number) in zip(printed, entries):
        writer.append(PdfReader(io.BytesIO(data)))
        writer.add_outline_item(title=title, page_number=number - first)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with OUTPUT.open("wb") as handle:
        writer.write(handle)

    text = "\n".join(page.extract_text() or "" for page in PdfReader(OUTPUT).pages)
    flat = re.sub(r"\s+", " ", text)
    problems = [f"pdf: the title {title!r} is not in the text" for title, _ in printed
                if re.sub(r"\s+", " ", title) not in flat]
    problems += [f"pdf: raw TeX in the text: {m.group(0)!r}" for m in RAW_TEX.finditer(text)][:10]
    for problem in problems:
        print(problem)
    total = len(PdfReader(OUTPUT).pages)
    print(f"pdf: {len(printed)} pages of the book in {total} PDF pages, a contents page and one "
          f"bookmark per page, written to {OUTPUT.relative_to(ROOT)}; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
