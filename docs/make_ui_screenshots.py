"""Regenerate docs/images/ui_{style,colorization,sketch,draw,video}.png: start the web UI on the shipped
models in checkpoints/ (as `img2img serve` does), translate a real photo in each tab with
Debian's chromium (Playwright) and screenshot the page; then draw on the canvas, and translate a
clip (a pan over a real photo) in the style tab's video input. Run it
again after the shipped models change.

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
from test_browser import TABS, draw_house, launch_browser, translate_in_tab, translate_video_in_tab, wait_for_result  # noqa: E402

from img2img.app import TAB_TASKS, build_app, discover_models, launch_app, model_examples, write_examples  # noqa: E402

# (tab, example written by the app) translated for each screenshot; the example shipped beside
# the tab's model with the same photo (e.g. its HED drawing of the astronaut) is used instead.
# A sketch model that takes colour hints is shown with its hinted example (astronaut_hints).
SHOTS = {"style": "chelsea", "colorization": "coffee_grey", "sketch": "astronaut_hints"}


def shoot(page, path: Path, what: str) -> None:
    page.wait_for_timeout(1000)  # the slider's images fade in
    page.screenshot(path=str(path), full_page=True)
    print(f"{path}: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="img2img-ui-shots-") as tmp:
        tmp = Path(tmp)
        examples = {p.stem: p for paths in write_examples(tmp / "examples").values() for p in paths}
        by_tab, _ = discover_models(REPO / "checkpoints", TAB_TASKS)
        beside = {key: {p.stem: p for p in model_examples(groups)} for key, groups in by_tab.items()}
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
                    shipped = beside[key].get(example) or beside[key].get(example.split("_")[0])
                    size = translate_in_tab(page, key, shipped or examples[example])
                    shoot(page, args.out / f"ui_{key}.png", f"{example} -> {size[0]}x{size[1]}")
                # The canvas, drawn on as a user would: no tool clicked first.
                page.reload()
                page.get_by_role("tab", name=TABS["sketch"], exact=True).click()
                page.get_by_role("tab", name="Draw", exact=True).click()
                canvas = page.locator("#sketch-pad canvas").first
                canvas.wait_for(timeout=30_000)
                draw_house(page, canvas, steps=6)
                page.click("#sketch-run-drawing")
                size = wait_for_result(page, "sketch", 120_000)
                shoot(page, args.out / "ui_draw.png", f"a drawing -> {size[0]}x{size[1]}")
                # A video: 2 s of a pan over the cat photo, translated with the style model.
                from skimage import data

                from img2img.video import pan_zoom, write_test_clip

                page.reload()
                clip = write_test_clip(pan_zoom(data.chelsea(), (450, 300), 48), tmp / "chelsea_pan.mp4", fps=24)
                info = translate_video_in_tab(page, clip, 300_000)
                page.eval_on_selector("#style-video-output video", "v => { v.pause(); v.currentTime = 1.0; }")
                page.locator("#style-video-summary").scroll_into_view_if_needed()
                page.wait_for_timeout(1500)  # the seek's frame is decoded
                shoot(page, args.out / "ui_video.png", f"chelsea_pan.mp4 -> {info['width']}x{info['height']}, {info['duration']:.1f} s")
                browser.close()
            demo.close()
        finally:
            os.chdir(cwd)


if __name__ == "__main__":
    main()
