"""The web UI in a real browser: Debian's chromium driven by Playwright loads the page, uploads a
real photo in each tab, clicks Translate and waits for the result; the sketch tab is also drawn
on. Skipped where chromium or the playwright package is missing (CI installs both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TABS = {"style": "Style transfer", "colorization": "Colorization", "sketch": "Sketch to photo"}

if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright; no browser download needed)"
)

from test_app import build_tiny_models, free_port, real_input  # noqa: E402  (after the skips)

from img2img.app import CANVAS_SIZE, build_app, launch_app  # noqa: E402


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def translate_in_tab(page, key: str, image: Path, timeout_ms: int = 60_000) -> tuple[int, int]:
    """Open tab `key`, upload `image`, click Translate, wait for the result; its (width, height)."""
    page.get_by_role("tab", name=TABS[key], exact=True).click()
    if key == "sketch":
        page.get_by_role("tab", name="Upload a sketch", exact=True).click()
    page.set_input_files(f"#{key}-input input[type=file]", str(image))
    page.wait_for_selector(f"#{key}-input img", timeout=timeout_ms)
    page.click(f"#{key}-run")
    page.wait_for_selector(f"#{key}-output img", timeout=timeout_ms)
    return tuple(page.eval_on_selector(f"#{key}-output img", "img => [img.naturalWidth, img.naturalHeight]"))


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, data_root, log):
    models = build_tiny_models(tmp_path_factory.getbasetemp() / "ui_models", data_root, log)
    demo = build_app(models, examples_dir=tmp_path_factory.mktemp("examples"))
    url = launch_app(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    yield url
    demo.close()


def test_each_tab_translates_an_uploaded_photo(page_url, tmp_path):
    inputs = {
        "style": real_input(tmp_path, "photo", (160, 120), "chelsea"),
        "colorization": real_input(tmp_path, "grey", (160, 120), "coffee"),
        "sketch": real_input(tmp_path, "sketch", (160, 120), "astronaut"),
    }
    with sync_api.sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url)
            for key, image in inputs.items():
                assert translate_in_tab(page, key, image) == (160, 120), key
                shot = tmp_path / f"{key}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert np.asarray(Image.open(shot).convert("L")).std() > 10  # a rendered page, not a blank one
        finally:
            browser.close()


def test_sketch_drawn_on_the_canvas_is_translated(page_url, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url)
            page.get_by_role("tab", name=TABS["sketch"], exact=True).click()
            page.get_by_role("tab", name="Draw", exact=True).click()
            canvas = page.locator("#sketch-pad canvas").first
            canvas.wait_for(timeout=30_000)
            page.locator("#sketch-pad").get_by_role("button", name="Brush", exact=True).click()
            box = canvas.bounding_box()
            assert box is not None
            # A house: a square and a roof, drawn with the mouse.
            x0, y0, s = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.45, box["width"] * 0.4
            points = [(x0, y0), (x0 + s, y0), (x0 + s, y0 + s * 0.8), (x0, y0 + s * 0.8), (x0, y0),
                      (x0 + s / 2, y0 - s * 0.4), (x0 + s, y0)]  # fmt: skip
            page.mouse.move(*points[0])
            page.mouse.down()
            for pt in points[1:]:
                page.mouse.move(*pt, steps=8)
            page.mouse.up()
            page.click("#sketch-run-drawing")
            page.wait_for_selector("#sketch-output img", timeout=60_000)
            size = page.eval_on_selector("#sketch-output img", "img => [img.naturalWidth, img.naturalHeight]")
            assert tuple(size) == CANVAS_SIZE  # the drawing is translated at the canvas size
            page.screenshot(path=str(tmp_path / "drawn.png"), full_page=True)
        finally:
            browser.close()

