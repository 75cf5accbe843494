"""Driving the live explorers (oldschool/explorer.js) in a page, as a reader does.

Shared by tests/test_explorer.py (a page made from the explorer's own output),
tests/test_browser.py (every rendered book page that has one) and
benchmarks/explorer_redraw_js.py (redraw times).
"""

# Everything an explorer shows: its canvases' pixels, the panel titles, and its redraw count.
DRAWING = r"""root => ({
    canvases: [...root.querySelectorAll('canvas')].map(c => c.toDataURL()),
    titles: [...root.querySelectorAll('figcaption')].map(f => f.textContent),
    redraws: +(root.dataset.redraws || 0),
    ms: +(root.dataset.redrawMs || NaN),
    setting: JSON.parse(root.dataset.setting || 'null'),
})"""

# The SDE kind each control needs to act on the drawing (the others are disabled then).
NEEDS_KIND = {"beta_min": "VP", "beta_max": "VP", "sigma_min": "VE", "sigma_max": "VE"}


def explorers(page):
    """Locators of the live explorers on the page (drawn at least once)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.oldschool-explorer')]"
        ".every(e => +(e.dataset.redraws || 0) >= 1)",
        timeout=15000,
    )
    roots = page.locator(".oldschool-explorer")
    return [roots.nth(i) for i in range(roots.count())]


def drawing(root):
    return root.evaluate(DRAWING)


def _wait_for_redraw(root, before, timeout=15000):
    root.page.wait_for_function(
        "([root, n]) => +(root.dataset.redraws || 0) > n",
        arg=[root.element_handle(), before],
        timeout=timeout,
    )


def move(root, name, direction=1):
    """Move control ``name`` of the explorer ``root`` one notch, as a reader would (arrow keys
    on a slider, the next option in a menu; ``direction`` -1: the other way, and the other way
    at either end); returns the drawing after the redraw."""
    control = root.locator(f'label[data-control="{name}"]').locator("input, select")
    before = drawing(root)["redraws"]
    if control.evaluate("el => el.tagName") == "SELECT":
        options = control.evaluate("el => [...el.options].map(o => o.value)")
        i = options.index(control.input_value())
        control.select_option(options[(i + direction) % len(options)])
    else:
        value, top = control.evaluate("el => [+el.value, +el.max]")
        if not 0 <= value + direction <= top:
            direction = -direction
        control.focus()
        control.press("ArrowRight" if direction > 0 else "ArrowLeft")
    _wait_for_redraw(root, before)
    return drawing(root)


def set_kind(root, kind):
    """Choose the SDE kind (no-op when it is already chosen)."""
    select = root.locator('label[data-control="kind"] select')
    if select.input_value() != kind:
        before = drawing(root)["redraws"]
        select.select_option(kind)
        _wait_for_redraw(root, before)


def control_names(root):
    return root.evaluate(
        "root => [...root.querySelectorAll('label[data-control]')]"
        ".map(l => l.dataset.control)"
    )


def moved_controls_problems(root, label="explorer"):
    """Move every control of one explorer; a control whose move leaves the drawing unchanged,
    or a 'change' event with no new value that redraws, is a problem."""
    problems = []
    for name in control_names(root):
        if name in NEEDS_KIND:
            set_kind(root, NEEDS_KIND[name])
        before = drawing(root)
        after = move(root, name)
        if after["canvases"] == before["canvases"]:
            problems.append(f"{label}: moving {name!r} did not change the drawing")
    count = drawing(root)["redraws"]
    root.locator("input, select").first.dispatch_event(
        "change"
    )  # same value: must not redraw
    root.page.wait_for_timeout(200)
    if drawing(root)["redraws"] != count:
        problems.append(f"{label}: a change event with an unchanged value redrew")
    return problems
