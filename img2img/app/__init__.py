"""The web UI (Gradio Blocks): style transfer, colorization and sketch-to-photo with the exported
.onnx models found in a folder; `img2img serve` and `python serve.py` start it.

  models.py  discovery of the models (model cards, no torch), their domains in plain words
             (Route: "photo → Starry Night"), and the session cache
  tabs.py    the tabs as data (TabSpec) and the one builder; upload reading and limits,
             strength, progress and cancellation, result file names

Everything the page needs (the models found, the cache of ONNX Runtime sessions, the limits, the
one-translation-at-a-time semaphore) is built inside build_app() (tabs.Serving) and reached
through closures: nothing lives in module globals, so two apps in one process (the tests start
several) never share state.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from PIL import Image

from img2img import __version__
from img2img.app.models import DIRECTION_LABELS, ModelFile, ModelGroup, Route, SessionCache, discover_models
from img2img.app.tabs import (
    CANVAS_SIZE, TAB_TASKS, TABS, Limits, Serving, TabSpec, blend, build_tab, card_markdown, read_upload, result_name,
)  # fmt: skip
from img2img.io import atomic_write
from img2img.rundir import EXAMPLES_DIR

__all__ = [
    "CANVAS_SIZE", "DIRECTION_LABELS", "EXAMPLE_PHOTOS", "TABS", "TAB_TASKS", "Limits", "ModelFile", "ModelGroup",
    "Route", "SessionCache", "TabSpec", "blend", "build_app", "card_markdown", "default_examples_dir",
    "device_line", "discover_models", "launch_app", "models_report", "policy_markdown", "read_upload",
    "model_examples", "result_name", "serve", "write_examples",
]  # fmt: skip

log = logging.getLogger("img2img")

# The canvas's own "Clear canvas" button empties it to a state that ignores strokes until Brush
# is clicked; the tab's Clear button (back to a white page, brush kept) replaces it.
CSS = """
.img2img-card {font-size: 0.9em}
.img2img-canvas button[aria-label="Clear canvas"] {display: none}
"""
# Result files and uploads older than an hour are deleted (checked hourly): a server that runs
# for weeks keeps at most about an hour of them.
DELETE_CACHE = (3600, 3600)


def policy_markdown(limits: Limits) -> str:
    return (
        f"**Limits.** Image uploads up to {limits.max_file_mb} MB and {limits.max_pixels / 1e6:g} megapixels; "
        f"videos up to {limits.max_video_seconds} s and {limits.max_video_mb} MB, translated at up to {limits.video_side} px. "
        f"The result always has the size of the input: images with a side above {limits.tile} px are "
        f"translated in overlapping {limits.tile} px tiles, blended, "
        f"so large photos work in bounded memory but take longer (the progress bar counts the tiles). "
        f"Requests are queued ({limits.concurrency} at a time, at most {limits.queue_size} waiting)."
    )


def models_report(by_tab: dict[str, list[ModelGroup]], skipped: list[str], models_dir: Path) -> list[str]:
    """The start-up lines about models: how many files, then per tab what it offers."""
    found = sum(len(g.files) for groups in by_tab.values() for g in groups)
    lines = [f"web UI: {found} model file(s) in {models_dir}"]
    for spec in TABS:
        groups = by_tab[spec.key]
        offers = "; ".join(f"{g.label} ({', '.join(g.files[d].route.label for d in g.directions)})" for g in groups)
        lines.append(f"  {spec.title}: {offers or 'no model (the tab says how to train and export one)'}")
    lines += [f"  skipped {note}" for note in skipped]
    return lines


def device_line(device: str, threads: int | None) -> str:
    """Where the UI's translations run and why, as ONNX Runtime will choose (see ort_providers)."""
    import onnxruntime as ort

    from img2img.devices import cpu_summary, cuda_usable
    from img2img.runtime.backends import CUDA_EP, ort_providers

    if CUDA_EP in ort_providers(device):  # raises for --device cuda where CUDA cannot be used
        return f"device: CUDA GPU ({'--device cuda' if device == 'cuda' else 'a usable CUDA GPU was found'})"
    if device == "cpu":
        why = "--device cpu"
    elif CUDA_EP not in ort.get_available_providers():
        why = "this onnxruntime has no CUDA provider"
    else:
        why = "no usable CUDA GPU found" if not cuda_usable() else "CUDA not chosen"
    return f"device: CPU ({why}); {cpu_summary()}; {threads or os.cpu_count()} thread(s) per translation"


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


def model_examples(groups: list[ModelGroup]) -> list[Path]:
    """Example inputs shipped beside a tab's first model file M.onnx (in examples/M/*.png), made
    the way its training inputs were (e.g. HED drawings for a sketch model trained on HED):
    better examples than the generic ones write_examples derives."""
    if not groups:
        return []
    first = groups[0].files[groups[0].directions[0]].path
    return sorted((first.parent / EXAMPLES_DIR / first.stem).glob("*.png"))


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
    serving = Serving(
        sessions if sessions is not None else SessionCache(device, threads, limits.tile), limits, models_dir,
        threading.BoundedSemaphore(limits.concurrency),
    )  # fmt: skip
    examples = write_examples(examples_dir or default_examples_dir())
    for spec in TABS:
        examples[spec.key] = model_examples(by_tab[spec.key]) or examples[spec.key]
    for line in models_report(by_tab, skipped, models_dir):
        log.info("%s", line)

    with gr.Blocks(title="img2img", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# img2img\nTurn a photo into a painting, colour a black-and-white photo, or turn a sketch into a "
            "photo. The models run on this server: your images go nowhere else."
        )
        with gr.Tabs():
            for spec in TABS:
                with gr.Tab(spec.title, id=spec.key):
                    build_tab(spec, by_tab[spec.key], examples[spec.key], serving)
        footer = f"{policy_markdown(limits)} Models are read from `{models_dir}` at start: restart the server to pick up new ones."
        if skipped:
            footer += " Skipped: " + "; ".join(html.escape(s, quote=False) for s in skipped)
        gr.Markdown(footer, elem_classes=["img2img-card"])
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
        server_name=host, server_port=port, max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block, show_error=False, ssr_mode=False, quiet=quiet, css=CSS,
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="sky"),
    )  # fmt: skip
    return url


def serve(
    models_dir: Path | str = "checkpoints",
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    limits: Limits = Limits(),
) -> None:
    """`img2img serve`: build the page and serve it until Ctrl-C. With several translations at
    once, each gets its share of the cores (each alone would use them all)."""
    threads = max(1, (os.cpu_count() or 1) // limits.concurrency) if limits.concurrency > 1 else None
    log.info("%s", device_line(device, threads))
    log.info("queue: %d translation(s) at a time, up to %d waiting", limits.concurrency, limits.queue_size)
    demo = build_app(models_dir, limits=limits, device=device, threads=threads)
    # Quiet: Gradio's own banner suggests launch(share=True), which `serve` has no flag for.
    url = launch_app(demo, host=host, port=port, limits=limits, block=False, quiet=True)
    log.info("web UI at %s (Ctrl-C stops it)", url)
    try:
        while demo.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        log.info("stopping the web UI")
    finally:
        # Not Gradio's block_thread(): it closes only the server, whose graceful shutdown then
        # waits on every open page's heartbeat stream. close() ends those streams and the queue first.
        demo.close(verbose=False)
