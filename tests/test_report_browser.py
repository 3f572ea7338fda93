"""The report's page as a person reads it: ``index.html`` opened in a real browser (Chromium,
driven by Playwright) at 1400 px wide.

Checks: nothing overflows sideways (the page no wider than the window, no table wider than its
container), every ``<img>`` loaded, the page asked for nothing but itself and its data URIs; and a
screenshot of each section is saved under the test's tmp dir (or under
``$PRUNEOPT_SCREENSHOTS`` when set), to be looked at.

The page is a report rendered from synthetic rows (``tests/report_rows.py``: every formulation,
network runs, an error, a refusal, a time limit, a missed budget), in a few seconds. Set
``PRUNEOPT_BROWSER_REPORT=DIR/index.html`` to check a real report as well.

Needs the ``playwright`` package (the ``test`` extra) and a Chromium at ``$PRUNEOPT_CHROMIUM``
(default ``/usr/bin/chromium``: Debian's ``apt-get install chromium``; ``playwright install`` is
never run). Without them the test is skipped with the reason — unless
``PRUNEOPT_BROWSER_TESTS=1`` (set by ``.ci/run``), where their absence is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from report_rows import META, joint_rows, sweep_rows

CHROMIUM = os.environ.get("PRUNEOPT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH, HEIGHT = 1400, 900
REQUIRED = os.environ.get("PRUNEOPT_BROWSER_TESTS") == "1"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set PRUNEOPT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _unavailable()
    if why:
        if REQUIRED:
            pytest.fail(f"browser tests are required here (PRUNEOPT_BROWSER_TESTS=1): {why}")
        pytest.skip(f"browser test skipped: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> Path:
    from pruneopt.reports.build import write_report

    out = tmp_path_factory.mktemp("browser-report")
    paths = write_report(out, joint_rows(), sweep_rows(), dict(META))
    return Path(paths["html"])


def _shots_dir(tmp_path: Path, name: str) -> Path:
    base = os.environ.get("PRUNEOPT_SCREENSHOTS")
    d = Path(base) / name if base else tmp_path / "screenshots"
    if d.exists() and base:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    return d


def check_page(browser, html: Path, shots: Path) -> dict:
    """Open ``html`` at 1400 px; assert it fits, its images loaded and it fetched nothing
    else; screenshot each section into ``shots``. Returns what was measured."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT},
                                  device_scale_factor=1, java_script_enabled=True)
    requests = []
    context.on("request", lambda req: requests.append(req.url))
    page = context.new_page()
    try:
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.evaluate("document.fonts ? document.fonts.ready.then(() => true) : true")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page scrolls sideways: {width[0]} px > {width[1]} px"
        too_wide = page.evaluate("""() => Array.from(document.querySelectorAll('table')).map(t => {
            const box = t.parentElement;  // .tablewrap
            const main = document.body.getBoundingClientRect();
            const r = t.getBoundingClientRect();
            return {head: Array.from(t.querySelectorAll('th')).map(h => h.textContent).join('|'),
                    table: Math.ceil(r.width), box: box.clientWidth,
                    scroll: box.scrollWidth, right: Math.ceil(r.right),
                    body: Math.floor(main.right)};
        }).filter(t => t.table > t.box || t.scroll > t.box || t.right > t.body + 1)""")
        assert not too_wide, f"tables wider than their container: {too_wide}"
        images = page.evaluate("""() => Array.from(document.images).map(i => ({alt: i.alt,
            complete: i.complete, w: i.naturalWidth, shown: i.getBoundingClientRect().width}))""")
        assert images, "the page has no image"
        broken = [i for i in images if not (i["complete"] and i["w"] > 0)]
        assert not broken, f"images that did not load: {broken}"
        body_w = page.evaluate("document.body.clientWidth")
        assert all(i["shown"] <= body_w + 1 for i in images), images
        outside = [u for u in requests if not u.startswith(("file:", "data:"))]
        assert not outside, f"the page fetched resources: {outside}"
        sections = page.locator("body > section")
        n = sections.count()
        assert n >= 3
        saved = []
        for i in range(n):
            sec = sections.nth(i)
            name = sec.get_attribute("id") or f"s{i}"
            path = shots / f"{i:02d}-{re.sub(r'[^a-z0-9-]+', '-', name)[:50]}.png"
            sec.screenshot(path=str(path))
            assert path.stat().st_size > 0
            saved.append(path)
        page.screenshot(path=str(shots / "full-page.png"), full_page=True)
        return {"width": width, "images": len(images), "sections": n, "shots": saved}
    finally:
        context.close()


def test_synthetic_report_fits_1400px(browser, synthetic_report, tmp_path):
    result = check_page(browser, synthetic_report, _shots_dir(tmp_path, "synthetic"))
    assert result["images"] >= 6  # gap and time (joint), both per formulation, accuracy, kept
    text = synthetic_report.read_text(encoding="utf-8")
    assert "errored or were refused" in text and "passed the cross-check" not in text


@pytest.mark.skipif(not os.environ.get("PRUNEOPT_BROWSER_REPORT"),
                    reason="set PRUNEOPT_BROWSER_REPORT=DIR/index.html to check a real report")
def test_given_report_fits_1400px(browser, tmp_path):
    html = Path(os.environ["PRUNEOPT_BROWSER_REPORT"])
    check_page(browser, html, _shots_dir(tmp_path, html.parent.name or "report"))
