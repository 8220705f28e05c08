"""The built book as a reader's browser shows it: headless Chromium over every chapter page.

Runs after the book build (``make test`` builds the smoke book, then ``pytest -m browser``); it
reads ``_build/html`` (or ``$BOOK_HTML``) and drives Debian's ``chromium`` (``$CHROMIUM``, else
``/usr/bin/chromium``) through Playwright: no browser is downloaded. Each page must have no error
in the JavaScript console, every image loaded, every internal link resolving, no markdown table
left as raw pipes and no code block wider than its column; chapter 8's explorer must change what
it shows when its controls are used. A screenshot of each page (1280 px wide) is written to
``_build/screenshots/`` for review.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
RAW_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")  # a markdown table's rule row, left unrendered

pytestmark = pytest.mark.browser
WRAPPED: dict[str, list[str]] = {}  # chapter -> visible code lines wider than the column


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(f"no Chromium at {path}: `apt-get install chromium` (Debian), or set CHROMIUM")
    return path


@pytest.fixture(scope="module")
def site():
    """The built book served on localhost (file:// would block the theme's fetches)."""
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no book in {HTML}: build it first (make book PROFILE=smoke)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def external():
    """Addresses outside the book that pages asked for: answered empty (the test runs
    offline), so the page's own scripts are what the console check sees."""
    return set()


def _open(browser, site, external, chapter):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(site) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            external.add(r.request.url.split("?")[0])
            r.fulfill(status=200, body="")

    page.route("**/*", route)
    page.goto(f"{site}book/{chapter}.html", wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


def _ids(path: Path, cache: dict = {}) -> set[str]:  # noqa: B006 - a cache on purpose
    if path not in cache:
        cache[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))
    return cache[path]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page(browser, site, external, chapter):
    page, errors = _open(browser, site, external, chapter)
    try:
        # images: lazy ones load when scrolled to, so load them all first
        page.evaluate("""async () => {
            const imgs = [...document.images];
            imgs.forEach(i => i.loading = "eager");
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        }""")
        broken = page.evaluate("""() => [...document.images]
            .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))""")
        assert not broken, f"{chapter}: images that did not load: {broken}"

        text = page.inner_text("main")
        assert not RAW_TABLE.search(text), f"{chapter}: a markdown table shows as raw pipes"
        assert "Traceback" not in text, f"{chapter}: a traceback in the page"

        # lines of visible code longer than the column holds: they wrap (book.css), noted below
        WRAPPED[chapter] = page.evaluate("""() => {
            const pres = [...document.querySelectorAll("main .cell_input pre")]
                .filter(p => p.offsetParent !== null);
            if (!pres.length) return [];
            const cs = getComputedStyle(pres[0]);
            const ctx = document.createElement("canvas").getContext("2d");
            ctx.font = cs.fontSize + " " + cs.fontFamily;
            const cw = ctx.measureText("x".repeat(100)).width / 100;
            const room = (pres[0].clientWidth - parseFloat(cs.paddingLeft)
                          - parseFloat(cs.paddingRight)) / cw;
            return pres.flatMap(p => p.innerText.split("\\n")).filter(l => l.length > room);
        }""")
        wide = page.evaluate("""() => [...document.querySelectorAll("main pre")]
            .filter(p => p.offsetParent !== null && p.scrollWidth > p.clientWidth + 2)
            .map(p => p.innerText.split("\\n").reduce((a, b) => a.length >= b.length ? a : b))""")
        assert not wide, f"{chapter}: code wider than the column, e.g. {wide[:3]}"

        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        missing = []
        for href in sorted(set(hrefs)):
            if not href.startswith(site):
                continue
            parts = urlsplit(href)
            target = HTML / unquote(parts.path[1:] or "index.html")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                missing.append(href)
            elif parts.fragment and target.suffix == ".html" and \
                    unquote(parts.fragment) not in _ids(target):
                missing.append(href)
        assert not missing, f"{chapter}: internal links that resolve to nothing: {missing}"

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{chapter}.png"), full_page=True)
        assert not errors, f"{chapter}: JavaScript console errors: {errors}"
    finally:
        page.close()


def test_explorer_responds_to_its_controls(browser, site, external):
    page, errors = _open(browser, site, external, "08_attention")
    try:
        explorer = page.locator(".transfer-explorer")
        assert explorer.count() == 1, "chapter 8 has no explorer in its HTML"

        def shown():
            return (explorer.get_attribute("data-state"),
                    explorer.locator("img").get_attribute("src"),
                    explorer.locator(".tx-bars").inner_text())

        start = shown()
        assert start[0] == "0:" + str(2 ** explorer.locator("input[type=checkbox]").count() - 1)
        boxes = explorer.locator("input[type=checkbox]")
        boxes.nth(0).click()
        boxes.nth(1).click()  # both LANet branches off: the feature map is zeroed
        off = shown()
        assert off[0] != start[0] and off[1] != start[1] and off[2] != start[2]
        explorer.locator("select").select_option(index=3)
        other = shown()
        assert other[0].startswith("3:") and other[1] != off[1]
        explorer.screenshot(path=str(SHOTS / "08_explorer.png"))
        assert not errors, errors
    finally:
        page.close()


def test_screenshots_of_every_chapter(external):
    """Runs last in this file: every chapter has its screenshot; prints what was faked."""
    assert sorted(p.stem for p in SHOTS.glob("[0-9][0-9]_*.png") if "_explorer" not in p.stem) \
        == CHAPTERS
    if external:
        print("answered empty (outside the book):", *sorted(external), sep="\n  ")
    for chapter, lines in WRAPPED.items():
        if lines:
            print(f"{chapter}: {len(lines)} visible code lines wrap at 1280 px, e.g. {lines[0]!r}")
