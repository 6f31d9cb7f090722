"""Regenerate docs/images/ui_{style,colorization,sketch}.png: train the tiny test models on real
photos, export them to ONNX in a temporary folder, start the web UI, translate a real photo in
each tab with Debian's chromium (Playwright) and screenshot the page.

    .venv/bin/python docs/make_ui_screenshots.py [--steps 150]

Needs the dev extra (pytest, scikit-image), playwright and /usr/bin/chromium. The models are the
tests' tiny ones (a few training steps), so the results show the pipeline, not a trained model.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from conftest import photo, real_photos  # noqa: E402
from test_app import build_tiny_models, free_port  # noqa: E402
from test_browser import launch_browser, translate_in_tab  # noqa: E402

from img2img.app import build_app, launch_app, write_examples  # noqa: E402

# (tab, example written by the app) translated for each screenshot.
SHOTS = {"style": "chelsea", "colorization": "coffee_grey", "sketch": "astronaut_sketch"}


def write_training_photos(root: Path) -> Path:
    """photos/ and unpaired/trainA + trainB/ from the scikit-image photos, as the tests' data_root."""
    for sub in ("photos", "unpaired/trainA", "unpaired/trainB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(real_photos()):
        img = photo(name, 48)
        img.save(root / "photos" / f"{name}.png")
        img.save(root / ("unpaired/trainA" if i < 3 else "unpaired/trainB") / f"{name}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps per tiny model (the tests use 2)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    log = logging.getLogger("img2img")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="img2img-ui-shots-") as tmp:
        tmp = Path(tmp)
        models = build_tiny_models(tmp / "ui", write_training_photos(tmp / "data"), log, steps=args.steps)
        examples = {p.stem: p for paths in write_examples(tmp / "examples").values() for p in paths}
        # Serve them from ./checkpoints, the default a user sees, without the tests' foreign .onnx.
        shutil.rmtree(models / "other")
        models.rename(models.parent / "checkpoints")
        cwd = Path.cwd()
        os.chdir(models.parent)
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
