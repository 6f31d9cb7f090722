"""The web UI (Gradio Blocks): style transfer, colorization and sketch-to-photo with the exported
.onnx models found in a folder; `img2img serve` and `python serve.py` start it.

  models.py  discovery of the models (model cards, no torch) and the session cache
  tabs.py    the tabs as data (TabSpec) and the one builder; upload reading and limits

Everything the page needs (the models found, the cache of ONNX Runtime sessions, the limits) is
built inside build_app() and reached through closures: nothing lives in module globals, so two
apps in one process (the tests start several) never share state.
"""

from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from PIL import Image

from img2img import __version__
from img2img.app.models import DIRECTION_LABELS, ModelFile, ModelGroup, SessionCache, discover_models
from img2img.app.tabs import CANVAS_SIZE, TAB_TASKS, TABS, Limits, TabSpec, build_tab, card_markdown, read_upload
from img2img.io import atomic_write

__all__ = [
    "CANVAS_SIZE", "DIRECTION_LABELS", "EXAMPLE_PHOTOS", "TABS", "TAB_TASKS", "Limits", "ModelFile", "ModelGroup",
    "SessionCache", "TabSpec", "build_app", "card_markdown", "default_examples_dir", "discover_models",
    "launch_app", "policy_markdown", "read_upload", "serve", "write_examples",
]  # fmt: skip

log = logging.getLogger("img2img")

CSS = ".img2img-card {font-size: 0.9em}"


def policy_markdown(limits: Limits) -> str:
    return (
        f"**Limits.** Uploads up to {limits.max_file_mb} MB and {limits.max_pixels / 1e6:g} megapixels. "
        f"The result always has the size of the input: images with a side above {limits.tile} px are "
        f"translated in overlapping {limits.tile} px tiles, blended, "
        f"so large photos work in bounded memory but take longer. Requests are queued "
        f"({limits.concurrency} at a time, at most {limits.queue_size} waiting)."
    )


# --------------------------------------------------------------------------------------------
# Example inputs: real photos (scikit-image ships them), made to look like each tab's input


EXAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def _example_makers() -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """TabSpec.input_mode -> (file name suffix, RGB photo -> example input)."""
    from img2img.data.derived import luminance, xdog

    return {"photo": ("", lambda rgb: rgb), "grey": ("_grey", luminance), "sketch": ("_sketch", xdog)}


def write_examples(folder: Path, side: int = 384, tabs: tuple[TabSpec, ...] = TABS) -> dict[str, list[Path]]:
    """Write the example inputs once (kept between starts) and return them per tab. Empty lists
    when scikit-image is missing: the page then shows no examples."""
    try:
        from skimage import data
    except ImportError:
        log.warning("scikit-image is not installed: the UI has no example images (pip install scikit-image)")
        return {t.key: [] for t in tabs}
    makers = _example_makers()
    folder = Path(folder)
    out: dict[str, list[Path]] = {t.key: [] for t in tabs}
    for name in EXAMPLE_PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        rgb = np.asarray(img)
        for t in tabs:
            suffix, make = makers[t.input_mode]
            path = folder / f"{name}{suffix}.png"
            if not path.is_file():  # atomic: two servers starting together never see half a file
                example = Image.fromarray(make(rgb))
                atomic_write(path, lambda tmp: example.save(tmp, format="PNG"))
            out[t.key].append(path)
    return out


def default_examples_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"img2img-ui-examples-{__version__}"


# --------------------------------------------------------------------------------------------
# The page


def build_app(
    models_dir: Path | str = "checkpoints",
    *,
    limits: Limits = Limits(),
    device: str = "auto",
    threads: int | None = None,
    examples_dir: Path | None = None,
    sessions: SessionCache | None = None,
) -> gr.Blocks:
    """The gr.Blocks page, queue configured. Start it with launch_app().

    sessions: the ONNX Runtime session cache to use (a new one by default); pass one to look
    at what was loaded (its tile size then applies instead of limits.tile)."""
    models_dir = Path(models_dir)
    by_tab, skipped = discover_models(models_dir, TAB_TASKS)
    sessions = sessions if sessions is not None else SessionCache(device, threads, limits.tile)
    examples = write_examples(examples_dir or default_examples_dir())
    found = sum(len(g.files) for groups in by_tab.values() for g in groups)
    log.info("web UI: %d model file(s) in %s%s", found, models_dir, f"; skipped {len(skipped)}" if skipped else "")

    with gr.Blocks(title="img2img", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# img2img\nImage-to-image translation with pix2pix and CycleGAN models exported to ONNX "
            f"(models from `{models_dir}`; restart the server to pick up new ones)."
        )
        if skipped:
            gr.Markdown("Skipped: " + "; ".join(html.escape(s, quote=False) for s in skipped))
        with gr.Tabs():
            for spec in TABS:
                with gr.Tab(spec.title, id=spec.key):
                    build_tab(spec, by_tab[spec.key], examples[spec.key], sessions, limits, models_dir)
        gr.Markdown(policy_markdown(limits))
    # One queue for every translate event (shared concurrency_id), bounded both ways.
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return demo


def launch_app(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    limits: Limits = Limits(),
    block: bool = True,
    quiet: bool = False,
) -> str:
    """Serve the page; returns its URL. Listens on 127.0.0.1 unless told otherwise: 0.0.0.0
    (every interface) is for containers and for users who choose to expose it.
    block=False returns at once with the server running in a thread (tests); demo.close() stops it."""
    _, url, _ = demo.launch(
        server_name=host, server_port=port, max_file_size=limits.max_file_bytes,
        prevent_thread_lock=not block, show_error=False, ssr_mode=False, quiet=quiet, css=CSS,
    )  # fmt: skip
    return url


def serve(models_dir: Path | str = "checkpoints", host: str = "127.0.0.1", port: int = 7860, device: str = "auto") -> None:
    """`img2img serve`: build the page and serve it until Ctrl-C."""
    limits = Limits()
    demo = build_app(models_dir, limits=limits, device=device)
    launch_app(demo, host=host, port=port, limits=limits, block=True)
