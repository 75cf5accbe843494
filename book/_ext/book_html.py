"""Small fixes to the rendered pages, so that every page reads offline and without console errors.

- matplotlib's ``Animation.to_jshtml()`` links Font Awesome 4 from a CDN for its button icons.
  The book's theme already carries Font Awesome (its ``fontawesome.js`` draws ``<i class="fa
  ...">`` icons), so the link is dropped from cell outputs and the page needs no network.
- sphinx-thebe and sphinx-togglebutton register their inline configuration scripts twice under
  jupyter-book 1.x; the second ``const THEBE_JS_URL`` is a SyntaxError in every page's console.
  Inline scripts with the same body are kept once.
- The ipywidgets manager typesets widget labels with the MathJax 2 call ``MathJax.Hub.Queue``;
  the book runs MathJax 3, where that is a TypeError. A few lines route the call to MathJax 3.

The browser test (tests/test_browser.py) fails a page that requests anything off the local
server or logs a JavaScript error, so it guards both.
"""

import re

from docutils import nodes

CDN_STYLESHEET = re.compile(
    r"<link\b[^>]*\bhref=[\"']https?://[^\"']*font-awesome[^\"']*[\"'][^>]*>\s*",
    re.IGNORECASE,
)


def drop_cdn_stylesheets(app, doctree, docname):
    for raw in list(doctree.findall(nodes.raw)):
        if "html" in raw.get("format", "") and CDN_STYLESHEET.search(raw.astext()):
            text = CDN_STYLESHEET.sub("", raw.astext())
            raw.replace_self(nodes.raw(text, text, format=raw["format"]))


def keep_inline_scripts_once(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        body = script.attributes.get("body") if hasattr(script, "attributes") else None
        if body and not script.filename:
            if body in seen:
                continue
            seen.add(body)
        unique.append(script)
    context["script_files"] = unique


# Runs before the widget manager draws (it waits for the window's load event), after MathJax
# (a deferred script) has defined its global.
MATHJAX2_QUEUE = """document.addEventListener("DOMContentLoaded", () => {
  if (!window.MathJax || !MathJax.startup || MathJax.Hub) return;
  MathJax.Hub = {Queue: (...calls) => calls.forEach(call => {
    if (Array.isArray(call) && call[0] === "Typeset" && call[2])
      MathJax.startup.promise.then(() => MathJax.typesetPromise([call[2]]));
  })};
});"""


def setup(app):
    app.add_js_file(None, body=MATHJAX2_QUEUE)
    app.connect("doctree-resolved", drop_cdn_stylesheets)
    app.connect("html-page-context", keep_inline_scripts_once, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
