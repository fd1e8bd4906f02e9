"""Render a page in headless Chromium (Debian's ``chromium``) through Playwright, for tests.

:func:`images` opens a local HTML file and returns, for every ``<img>``, its alt text, class,
natural size and how many distinct colours it shows once drawn (1 for a blank image), read
from a canvas inside the browser: so a test sees what a user's browser would show.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

MEASURE = """() => [...document.images].map(img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    let colours = 0;
    if (c.width && c.height) {
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const px = g.getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < px.length; i += 4) seen.add((px[i] << 16) | (px[i+1] << 8) | px[i+2]);
        colours = seen.size;
    }
    return {alt: img.alt, cls: img.className, width: img.naturalWidth,
            height: img.naturalHeight, complete: img.complete, colours: colours};
})"""


def chromium() -> str:
    """The Chromium binary; skip the calling test, with the reason, when it is absent."""
    pytest.importorskip("playwright", reason="the browser tests need playwright "
                                             "(pip install -e '.[test]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("the browser tests need Debian's chromium (apt-get install chromium)")
    return path


def images(page: Path, screenshot: Path | None = None) -> tuple[list[dict], str]:
    """Every image of ``page`` as the browser drew it, and the page's visible text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 900})
            tab.goto(Path(page).absolute().as_uri(), wait_until="load")
            found = tab.evaluate(MEASURE)
            text = tab.inner_text("body")
            if screenshot is not None:
                tab.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return found, text
