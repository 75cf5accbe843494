"""The rendered book, read as a reader reads it: every page of _toc.yml in headless Chromium.

The built pages (_build/html) are served on localhost and opened in Debian's chromium,
driven by Playwright (no browser download: `make browser` installs the Debian package). The
network is closed: every request that does not go to the local server is aborted and fails
the page, so a page that needs a CDN fails here. For every page, at a desktop width and at a
phone width (390 px):

- no JavaScript error, no failed or non-local request;
- math typeset by MathJax (served from the build), no raw TeX left in the text;
- every <img> loaded; no cell output with a traceback or an Error/Warning line;
- every internal link and #anchor resolves to a file and an id of the build;
- matplotlib JS animations have their controls, and stepping changes the frame;
- pages with ipywidgets carry the widgets' saved state, and the widgets are drawn from it;
- live explorers (oldschool.explorer) redraw when any of their controls moves;
- the book's look: logo, favicon, repository, edit and (for notebooks) Colab buttons;
- no horizontal page overflow outside scrolling boxes (code cells, wide tables);
- at the desktop width, no code cell whose source is wider than its box;
- a full-page screenshot per page and width under _build/screenshots/.

OLDSCHOOL_REUSE_BUILD=1 reuses an existing _build/html instead of building the book;
OLDSCHOOL_BOOK_HTML=/some/html checks another build (screenshots go beside it).
"""

import functools
import http.server
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from playwright.sync_api import sync_playwright

from conftest import (
    BUILD,
    CHROMIUM,
    CHROMIUM_FLAGS,
    ROOT,
    book_config,
    require_chromium,
    toc_files,
)
from explorer_page import explorers, moved_controls_problems

pytestmark = pytest.mark.book

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

# A line of a cell output that reports a problem: "Traceback (most recent call last)",
# "UserWarning: ...", "ValueError: ...", "Warning: ...", "RuntimeError(...)".
PROBLEM_LINE = re.compile(
    r"Traceback \(most recent call last\)|(^|[\s:.])\w*(Error|Warning|Exception)\b\s*(:|\()",
    re.MULTILINE,
)
# TeX that MathJax should have turned into math: \( \) \[ \] $$ \begin{...}, or $...$ holding
# a backslash, ^ or _ (a dollar amount in prose does not match).
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\n]*[\\^_][^$\n]*\$")


# ---------------------------------------------------------------------------------------------
# The build, the server, the browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def book_html(request):
    """The folder of built pages: a fresh build (built_book) unless told to reuse one."""
    override = os.environ.get("OLDSCHOOL_BOOK_HTML")
    if override:
        html = Path(override).resolve()
    elif (
        os.environ.get("OLDSCHOOL_REUSE_BUILD") == "1"
        and (BUILD / "html" / "index.html").exists()
    ):
        html = BUILD / "html"
    else:
        request.getfixturevalue("built_book")
        html = BUILD / "html"
    assert (html / "index.html").exists(), f"no built book at {html}"
    return html


@pytest.fixture(scope="session")
def screenshots(book_html):
    folder = book_html.parent / "screenshots"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(
            sys.exc_info()[1], ConnectionError
        ):  # a tab closed mid-request is fine
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def server(book_html):
    """http://127.0.0.1:<free port>/ serving the built pages, from a thread."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class Offline:
    """Aborts every request that does not go to the local server, and remembers it."""

    def __init__(self, base):
        self.port = urlsplit(base).port
        self.blocked = []

    def __call__(self, route):
        url = urlsplit(route.request.url)
        if (
            url.scheme in ("http", "https")
            and url.hostname in LOCAL_HOSTS
            and url.port == self.port
        ):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("internetdisconnected")


@pytest.fixture(
    scope="module"
)  # closed after this module: other modules start their own
def browser_context(server, tmp_path_factory):
    """Debian's chromium with a fresh profile and the network closed to all but the server."""
    require_chromium()
    offline = Offline(server)
    with sync_playwright() as playwright:
        # launch_persistent_context is Playwright's way to pass --user-data-dir: a fresh one.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=DESKTOP,
            service_workers="block",
        )
        context.route("**/*", offline)
        context.offline_log = offline
        yield context
        context.close()


# ---------------------------------------------------------------------------------------------
# What a page must show (run in the page)
# ---------------------------------------------------------------------------------------------

WAIT_FOR_MATHJAX = r"""async () => {
    if (!document.querySelector('script[src*="mathjax"]')) return 'no mathjax on this page';
    for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(r => setTimeout(r, 50));
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax did not start';
    await MathJax.startup.promise;
    return 'typeset';
}"""

MATH_STATE = r"""() => {
    const math = [...document.querySelectorAll('.bd-article .math, .bd-article .amsmath')];
    const untypeset = math.filter(m => !m.querySelector('mjx-container') && m.tagName !== 'MJX-CONTAINER')
                          .map(m => m.textContent.trim().slice(0, 80));
    const errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
                      .map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80));
    // Text a reader sees, outside code, scripts and typeset math.
    const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .cell_input, .widget-area';
    const walker = document.createTreeWalker(document.querySelector('.bd-article') || document.body,
                                             NodeFilter.SHOW_TEXT);
    const text = [], stray = [];
    const isMath = el => el && el.nodeType === 1 && (el.matches('mjx-container, .math') || el.querySelector('mjx-container'));
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n.parentElement.closest(skip)) continue;
        text.push(n.textContent);
        // A "$" left beside a typeset formula: "$$" in the middle of a paragraph, or a lone "$".
        if ((/\$\s*$/.test(n.textContent) && isMath(n.nextSibling)) ||
            (/^\s*\$/.test(n.textContent) && isMath(n.previousSibling)))
            stray.push(n.textContent.trim().slice(-40));
    }
    return {count: math.length, rendered: document.querySelectorAll('mjx-container').length,
            untypeset, errors, stray, text: text.join(' ')};
}"""

IMAGES = r"""async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(r => { img.onload = img.onerror = r; setTimeout(r, 10000); })));
    return images.map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0}));
}"""

OUTPUTS = r"""() => [...document.querySelectorAll('.cell_output')].map((o, i) => ({
    index: i,
    error_box: !!o.querySelector('.traceback, .output.error'),
    text: o.innerText,
}))"""

LINKS = r"""() => {
    const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
    const resources = [...document.querySelectorAll('link[href]')].map(l => l.href);
    return {links, resources};
}"""

LOOK = r"""() => {
    const hrefs = [...document.querySelectorAll('a[href]')].map(a => a.href);
    const logo = document.querySelector('img.logo__image');
    const icon = document.querySelector('link[rel~="icon"]');
    return {
        title: document.title,
        logo: logo ? {src: logo.src, ok: logo.naturalWidth > 0} : null,
        favicon: icon ? icon.href : null,
        hrefs,
    };
}"""

# Elements that stick out of the viewport sideways, unless a box that scrolls or clips them
# (a code cell, a table wrapper, a display equation) holds them inside the viewport; and the
# page's own horizontal scroll width.
OVERFLOW = r"""() => {
    const vw = document.documentElement.clientWidth;
    const holds = el => {
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
            const s = getComputedStyle(a);
            if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) {
                // a box that scrolls or clips, inside the window, holds it; a clipping box that
                // itself sticks out (MathJax's span.math in a wide table) defers to its own boxes
                const r = a.getBoundingClientRect();
                if (r.left >= -1 && r.right <= vw + 1) return true;
            }
            if (s.position === 'fixed') return true;   // drawers and overlays, off-canvas on phones
        }
        return false;
    };
    const out = [];
    for (const el of document.body.querySelectorAll('*')) {
        if (el.closest('mjx-assistive-mml')) continue;   // screen-reader copy, clipped to 1 px
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue;
        if (r.right <= vw + 1 && r.left >= -1) continue;
        const s = getComputedStyle(el);
        if (s.visibility === 'hidden' || s.position === 'fixed' || holds(el)) continue;
        out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} `
                 + `[${Math.round(r.left)}, ${Math.round(r.right)}] "${(el.innerText || '').slice(0, 40)}"`);
    }
    return {scrollWidth: document.documentElement.scrollWidth, clientWidth: vw,
            bodyScrollWidth: document.body.scrollWidth, offenders: out.slice(0, 10)};
}"""

ANIMATIONS = r"""() => [...document.querySelectorAll('.animation')].map(a => ({
    id: (a.querySelector('img') || {}).id,
    buttons: [...a.querySelectorAll('button')].map(b => b.title),
    slider: !!a.querySelector('input.anim-slider'),
}))"""

WIDGETS = r"""() => {
    const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
                     .map(s => JSON.parse(s.textContent).model_id);
    const states = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]')]
                     .map(s => Object.keys(JSON.parse(s.textContent).state || {}));
    return {views, state_ids: states.flat(), drawn: document.querySelectorAll('.jupyter-widgets').length};
}"""


# ---------------------------------------------------------------------------------------------
# The test, one per page of _toc.yml
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("docname", toc_files())
def test_page_reads_in_a_browser(
    docname, book_html, server, browser_context, screenshots
):
    assert (book_html / f"{docname}.html").exists(), (
        f"{docname} is in _toc.yml but was not built"
    )
    offline = browser_context.offline_log
    offline.blocked.clear()
    page = browser_context.new_page()
    console, failed = [], []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None
        ),
    )
    shot = screenshots / docname.replace("/", "_")
    problems = []
    try:
        page.set_viewport_size(DESKTOP)
        page.goto(urljoin(server, f"{docname}.html"), wait_until="load")
        page.wait_for_load_state("networkidle")
        problems += _math_problems(page)
        problems += _image_problems(page)
        problems += _output_problems(page)
        problems += _link_problems(page, book_html)
        problems += _look_problems(page, docname)
        problems += _widget_problems(page)
        _screenshot(page, shot.with_name(shot.name + ".png"))
        problems += _overflow_problems(page, "desktop")
        problems += _code_cell_problems(page)
        problems += _animation_problems(page)
        problems += _explorer_problems(page)
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(300)
        problems += _overflow_problems(page, "390 px")
        _screenshot(page, shot.with_name(shot.name + ".390px.png"))
    finally:
        page.close()

    problems += [
        f"request outside localhost (network closed): {u}" for u in offline.blocked
    ]
    problems += [
        f"failed request: {f}"
        for f in failed
        if not any(u in f for u in offline.blocked)
    ]
    problems += [
        f"console error: {c}" for c in console if "ERR_INTERNET_DISCONNECTED" not in c
    ]  # already reported as a blocked request
    if problems:
        pytest.fail(
            f"{docname}.html ({len(problems)} problems):\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def _math_problems(page):
    """MathJax ran, every formula is typeset without errors, no TeX source is left in the text."""
    mathjax = page.evaluate(WAIT_FOR_MATHJAX)
    math = page.evaluate(MATH_STATE)
    problems = []
    if math["count"] and mathjax != "typeset":
        problems.append(f"math on the page but {mathjax}")
    if math["untypeset"]:
        problems.append(
            f"{len(math['untypeset'])} formulas not typeset, e.g. {math['untypeset'][:3]}"
        )
    if math["errors"]:
        problems.append(f"MathJax errors: {math['errors'][:3]}")
    raw = sorted({m.group(0) for m in RAW_TEX.finditer(math["text"])})
    if raw:
        problems.append(f"raw TeX visible in the text: {raw[:5]}")
    if math["stray"]:
        problems.append(
            f"a '$' left beside a formula (display math inside a paragraph?): {math['stray'][:3]}"
        )
    return problems


def _image_problems(page):
    return [
        f"image did not load: {img['src'][:120]}"
        for img in page.evaluate(IMAGES)
        if not img["ok"]
    ]


def _output_problems(page):
    problems = []
    for out in page.evaluate(OUTPUTS):
        if out["error_box"]:
            problems.append(f"cell output {out['index']} is an error")
        lines = [line for line in out["text"].splitlines() if PROBLEM_LINE.search(line)]
        if lines:
            problems.append(
                f"cell output {out['index']} has a traceback/Error/Warning line: {lines[:3]}"
            )
    return problems


def _link_problems(page, html_dir):
    """Every link to the local server (<a>, and <link>: stylesheets, icons) names a file of the
    build, and its #fragment an id in that file."""
    found = page.evaluate(LINKS)
    problems = []
    for href in found["links"] + found["resources"]:
        parts = urlsplit(href)
        if parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS:
            why = _broken_link(href, html_dir)
            if why:
                problems.append(f"broken internal link {why}")
    return problems


def _broken_link(url, html_dir):
    """Why an internal URL does not resolve in the build, or None when it does."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if path.endswith("/"):
        path += "index.html"
    target = html_dir / path.lstrip("/")
    if not target.is_file():
        return f"{url}: no such file in the build"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids(str(target)):
        return f"{url}: no id {fragment!r} in {target.relative_to(html_dir)}"
    return None


@functools.lru_cache(maxsize=None)
def _ids(path):
    text = Path(path).read_text(errors="replace")
    return set(re.findall(r'\b(?:id|name)="([^"]+)"', text))


def _look_problems(page, docname):
    """Title, logo, favicon, and the repository, edit-this-page and (notebooks) Colab buttons."""
    look = page.evaluate(LOOK)
    config = book_config()
    repo = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    problems = []
    if config["title"] not in look["title"]:
        problems.append(f"page title {look['title']!r} lacks the book's title")
    if not look["logo"] or not look["logo"]["ok"]:
        problems.append(f"logo missing or not loaded: {look['logo']}")
    if not look["favicon"]:
        problems.append("no favicon <link>")
    hrefs = look["hrefs"]
    if repo not in hrefs:
        problems.append(f"no repository button linking to {repo}")
    source = next(
        (
            f"{docname}{suffix}"
            for suffix in (".ipynb", ".md")
            if (ROOT / f"{docname}{suffix}").exists()
        ),
        None,
    )
    edit = re.compile(rf"{re.escape(repo)}/edit/{branch}/{re.escape(source or '')}")
    if source and not any(edit.fullmatch(h) for h in hrefs):
        problems.append(f"no 'edit this page' link to {repo}/edit/{branch}/{source}")
    if source and source.endswith(".ipynb"):
        colab = re.compile(
            rf"https://colab\.research\.google\.com/github/"
            rf"{re.escape(urlsplit(repo).path.strip('/'))}/blob/{branch}/{re.escape(source)}"
        )
        if not any(colab.fullmatch(h) for h in hrefs):
            problems.append("no 'Open in Colab' link to this notebook")
    return problems


def _widget_problems(page):
    """Pages with ipywidgets carry their saved state, and the local widget manager draws them."""
    widgets = page.evaluate(WIDGETS)
    if not widgets["views"]:
        return []
    problems = []
    missing = [v for v in widgets["views"] if v not in widgets["state_ids"]]
    if missing:
        problems.append(f"widgets without saved state on the page: {missing[:3]}")
    try:
        page.wait_for_function(
            "n => document.querySelectorAll('.jupyter-widgets').length >= n",
            arg=len(widgets["views"]),
            timeout=15000,
        )
    except Exception:
        problems.append(
            f"{len(widgets['views'])} widget views, but the widget manager drew "
            f"{page.evaluate(WIDGETS)['drawn']}"
        )
    return problems


def _animation_problems(page):
    """Each matplotlib to_jshtml animation has its buttons and slider, and a step moves the frame."""
    problems = []
    needed = {
        "First frame",
        "Previous frame",
        "Play",
        "Pause",
        "Next frame",
        "Last frame",
    }
    for anim in page.evaluate(ANIMATIONS):
        missing = needed - set(anim["buttons"])
        if missing or not anim["slider"] or not anim["id"]:
            problems.append(
                f"animation {anim['id']} lacks controls: {sorted(missing)}, slider={anim['slider']}"
            )
            continue
        img = page.locator(f"#{anim['id']}")
        box = img.locator("xpath=ancestor::div[contains(@class, 'animation')][1]")
        box.locator('button[title="First frame"]').click()
        first = img.get_attribute("src")
        box.locator('button[title="Next frame"]').click()
        if img.get_attribute("src") == first:
            problems.append(
                f"animation {anim['id']}: 'Next frame' did not change the frame"
            )
        slider = box.locator("input.anim-slider").input_value()
        if slider != "1":
            problems.append(
                f"animation {anim['id']}: slider at {slider} after one step, expected 1"
            )
    return problems


def _explorer_problems(page):
    """Each live explorer (no kernel, network closed) redraws when any control moves."""
    if not page.locator(".oldschool-explorer").count():
        return []
    problems = []
    for i, root in enumerate(explorers(page)):
        root.scroll_into_view_if_needed()
        problems += moved_controls_problems(root, f"live explorer {i}")
    return problems


def _screenshot(page, path):
    """A full-page screenshot from the top, nothing focused (a focused link shows the skip bar)."""
    page.evaluate(
        "() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }"
    )
    page.screenshot(path=str(path), full_page=True)


CODE_CELLS = """() => [...document.querySelectorAll('div.cell_input pre')]
    .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
    .map(pre => {
        const lines = pre.textContent.split('\\n');
        const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
        return `${pre.scrollWidth} px in a ${pre.clientWidth} px box: ${longest.slice(0, 60)}...`;
    })"""


def _code_cell_problems(page):
    """At the desktop width every code cell's source fits its box: no sideways scrolling."""
    return [f"desktop: a code cell is cut off ({c})" for c in page.evaluate(CODE_CELLS)]


def _overflow_problems(page, width_name):
    layout = page.evaluate(OVERFLOW)
    problems = []
    if (
        max(layout["scrollWidth"], layout["bodyScrollWidth"])
        > layout["clientWidth"] + 1
    ):
        problems.append(
            f"{width_name}: the page scrolls sideways "
            f"({layout['scrollWidth']} px wide in a {layout['clientWidth']} px window)"
        )
    if layout["offenders"]:
        problems.append(
            f"{width_name}: content sticks out of the window: {layout['offenders']}"
        )
    return problems


def test_site_root_opens_the_preface(book_html, server, browser_context):
    """The address a reader is given (the site root) lands on the first page of _toc.yml."""
    page = browser_context.new_page()
    try:
        page.goto(server, wait_until="load")
        page.wait_for_url(f"**/{toc_files()[0]}.html", timeout=10000)
    finally:
        page.close()


# Any tag that makes the browser fetch something from another host (a CDN, a font service).
REMOTE_FETCH = re.compile(
    r"<(script|img|iframe|source|video|audio)\b[^>]*\bsrc=[\"']((https?:)?//[^\"']+)"
    r"|<link\b(?=[^>]*\brel=[\"'][^\"']*(stylesheet|icon|preload|modulepreload|prefetch))[^>]*\bhref=[\"']((https?:)?//[^\"']+)"
    r"|@import\s+(url\()?[\"']?((https?:)?//[^\"')\s]+)",
    re.IGNORECASE,
)


def test_every_built_page_reads_offline(book_html):
    """All pages of the build (search and index pages too): nothing fetched from another host,
    MathJax and the widget manager served from _static."""
    problems = []
    for path in sorted(book_html.rglob("*.html")):
        text = path.read_text(errors="replace")
        for m in REMOTE_FETCH.finditer(text):
            url = next(g for g in (m.group(2), m.group(5), m.group(8)) if g)
            problems.append(f"{path.relative_to(book_html)} fetches {url}")
        if (
            "vendor/jupyter-widgets/embed.js" in text
            and not (book_html / "_static/vendor/jupyter-widgets/embed.js").exists()
        ):
            problems.append(
                f"{path.relative_to(book_html)} needs the widget manager: run `make vendor`"
            )
    assert (book_html / "_static/mathjax/tex-chtml.js").exists(), (
        "MathJax is not in the build (sphinx-mathjax-offline)"
    )
    assert not problems, "\n".join(problems[:20])
