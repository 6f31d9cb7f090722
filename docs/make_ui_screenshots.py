"""Regenerate docs/images/ui_{style,colorization,sketch}.png: start the web UI on the shipped
models in checkpoints/ (as `img2img serve` does), translate a real photo in each tab with
Debian's chromium (Playwright) and screenshot the page.

    .venv/bin/python docs/make_ui_screenshots.py

Needs the dev extra (pytest, scikit-image), playwright and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from test_app import free_port  # noqa: E402
from test_browser import launch_browser, translate_in_tab  # noqa: E402

from img2img.app import build_app, launch_app, write_examples  # noqa: E402

# (tab, example written by the app) translated for each screenshot.
SHOTS = {"style": "chelsea", "colorization": "coffee_grey", "sketch": "astronaut_sketch"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="img2img-ui-shots-") as tmp:
        tmp = Path(tmp)
        examples = {p.stem: p for paths in write_examples(tmp / "examples").values() for p in paths}
        cwd = Path.cwd()
        os.chdir(REPO)  # the page shows the models folder as a user sees it: ./checkpoints
        try:
            demo = build_app(Path("checkpoints"), examples_dir=tmp / "examples")
            url = launch_app(demo, port=free_port(), block=False, quiet=True)
            args.out.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = launch_browser(p)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                for key, example in SHOTS.items():
                    size = translate_in_tab(page, key, examples[example])
                    path = args.out / f"ui_{key}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(f"{path.relative_to(REPO)}: {example} -> {size[0]}x{size[1]}")
                browser.close()
            demo.close()
        finally:
            os.chdir(cwd)


if __name__ == "__main__":
    main()
