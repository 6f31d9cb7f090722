"""The web UI (Gradio Blocks): style transfer, colorization and sketch-to-photo with the exported
.onnx models found in a folder; `img2img serve` and `python serve.py` start it.

Everything the page needs (the models found, the cache of ONNX Runtime sessions, the limits) is
built inside build_app() and reached through closures: nothing lives in module globals, so two
apps in one process (the tests start several) never share state.

Uploads are read by our own code, not Gradio's preprocessing (preprocess=False on the translate
events): load_image() applies the pixel limit before decoding, and a corrupt or non-image file
becomes a gr.Error message in the page instead of an opaque server error.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import yaml
from PIL import Image

from img2img import Img2ImgError, __version__
from img2img.data.images import ImageReadError, load_image
from img2img.runtime import DEFAULT_TILE, ModelCard, Translator

log = logging.getLogger("img2img")

DIRECTION_LABELS = {"AtoB": "A → B", "BtoA": "B → A"}
CSS = ".img2img-card {font-size: 0.9em}"


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server."""

    max_file_mb: int = 20             # upload size (Gradio rejects larger files at upload)
    max_pixels: int = 40_000_000      # decompression-bomb guard, checked from the header before decoding
    tile: int = DEFAULT_TILE          # sides above this are translated in overlapping tiles
    queue_size: int = 16              # requests waiting; more get "queue full"
    concurrency: int = 1              # translations running at once, over all tabs (each uses every core)

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Models: discovery, grouping, lazily created sessions


@dataclass(frozen=True)
class ModelFile:
    path: Path
    card: ModelCard


@dataclass
class ModelGroup:
    """One choice in a tab's model list: an exported run, with one .onnx per direction
    (CycleGAN exports give two files, AtoB and BtoA; pix2pix gives one)."""

    label: str
    name: str                                     # the run's name from its config
    files: dict[str, ModelFile] = field(default_factory=dict)  # direction -> file

    @property
    def directions(self) -> list[str]:
        return [d for d in DIRECTION_LABELS if d in self.files]


@dataclass(frozen=True)
class TabSpec:
    key: str                 # style | colorization | sketch
    title: str
    tasks: tuple[str, ...]   # model card tasks shown in this tab
    api_name: str
    input_label: str
    train_hint: str          # shown when no model is found


TABS = (
    TabSpec("style", "Style transfer", ("style", "paired"), "style_transfer", "Photo",
            "img2img train --config cyclegan --data path/to/horse2zebra   # trainA/ + trainB/ (or --dataset horse2zebra)\n"
            "img2img export checkpoints/cyclegan -o {models}/cyclegan_AtoB.onnx\n"
            "img2img export checkpoints/cyclegan --direction BtoA -o {models}/cyclegan_BtoA.onnx"),
    TabSpec("colorization", "Colorization", ("colorization",), "colorize", "Grey photo",
            "img2img train --config colorization --data path/to/photos   # any folder of colour photos\n"
            "img2img export checkpoints/colorization -o {models}/colorization.onnx"),
    TabSpec("sketch", "Sketch to photo", ("sketch2photo",), "sketch_to_photo", "Sketch",
            "img2img train --config sketch2photo --data path/to/photos   # any folder of photos; sketches are derived\n"
            "img2img export checkpoints/sketch2photo -o {models}/sketch2photo.onnx"),
)  # fmt: skip


def _run_name(card: ModelCard, path: Path) -> str:
    try:
        name = (yaml.safe_load(card.config) or {}).get("name")
    except yaml.YAMLError:
        name = None
    return str(name) if name else path.stem


def discover_models(models_dir: Path) -> tuple[dict[str, list[ModelGroup]], list[str]]:
    """Every .onnx under models_dir (recursive, hidden folders skipped) that carries an img2img
    model card, grouped per tab. Returns (tab key -> groups, notes on files skipped).

    Files of one run share their config (both CycleGAN directions are exported from one run
    directory), so the config text groups them; a second file for a direction already present
    starts a new group."""
    from img2img.export import read_onnx_card  # imports torch: only when models are looked for

    models_dir = Path(models_dir)
    by_tab: dict[str, list[ModelGroup]] = {t.key: [] for t in TABS}
    skipped: list[str] = []
    if not models_dir.is_dir():
        return by_tab, [f"{models_dir} does not exist"]
    paths = sorted(
        p for p in models_dir.rglob("*.onnx")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(models_dir).parts)
    )  # fmt: skip
    groups: dict[tuple[str, str], list[ModelGroup]] = {}
    for path in paths:
        rel = path.relative_to(models_dir)
        try:
            card = read_onnx_card(path)
        except Img2ImgError as e:
            skipped.append(f"{rel}: {str(e).removeprefix(f'{path}: ')}")
            continue
        tab = next((t.key for t in TABS if card.task in t.tasks), None)
        if tab is None or card.direction not in DIRECTION_LABELS:
            skipped.append(f"{rel}: task {card.task!r}, direction {card.direction!r}: not something the UI can show")
            continue
        candidates = groups.setdefault((tab, card.task + card.config), [])
        group = next((g for g in candidates if card.direction not in g.files), None)
        if group is None:
            group = ModelGroup(label="", name=_run_name(card, path))
            candidates.append(group)
            by_tab[tab].append(group)
        group.files[card.direction] = ModelFile(path, card)
    for tab_groups in by_tab.values():
        # Label = run name; runs sharing a name are told apart by their first file.
        names = [g.name for g in tab_groups]
        for g in tab_groups:
            first = g.files[g.directions[0]].path.relative_to(models_dir)
            g.label = g.name if names.count(g.name) == 1 else f"{g.name} ({first})"
    return by_tab, skipped


class SessionCache:
    """One Translator (one ONNX Runtime session) per model file, created on first use and kept.
    The lock makes concurrent first requests share one session instead of loading twice."""

    def __init__(self, device: str = "auto", threads: int | None = None, tile: int = DEFAULT_TILE):
        self._device, self._threads, self._tile = device, threads, tile
        self._sessions: dict[Path, Translator] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> Translator:
        with self._lock:
            if path not in self._sessions:
                self._sessions[path] = Translator(path, backend="onnx", device=self._device, threads=self._threads, tile=self._tile)
            return self._sessions[path]

    def loaded(self) -> list[Path]:
        with self._lock:
            return list(self._sessions)


# --------------------------------------------------------------------------------------------
# Requests


def _uploaded(payload: Any) -> tuple[Path, str]:
    """(file on the server, name the user gave it) from an unpreprocessed gr.Image value."""
    if isinstance(payload, dict) and payload.get("path"):
        return Path(payload["path"]), str(payload.get("orig_name") or Path(payload["path"]).name)
    if isinstance(payload, str) and payload:
        return Path(payload), Path(payload).name
    raise Img2ImgError("no image: upload one (or pick an example) first")


def read_upload(payload: Any, limits: Limits) -> Image.Image:
    """The uploaded image as RGB, or Img2ImgError saying why it cannot be used. Gradio already
    refuses files over max_file_size at upload; the size is checked again here for apps mounted
    without that launch() setting."""
    path, name = _uploaded(payload)
    try:
        size = path.stat().st_size
    except OSError:
        raise Img2ImgError(f"{name}: the upload is gone from the server; upload it again") from None
    if size > limits.max_file_bytes:
        raise Img2ImgError(f"{name}: {size / 2**20:.1f} MB is over the {limits.max_file_mb} MB upload limit")
    try:
        # `name` only labels errors; the bytes come from the server-side copy.
        return load_image(name, max_pixels=limits.max_pixels, data=path.read_bytes())
    except ImageReadError as e:
        # load_image speaks to CLI users ("replace or remove the file"); here, ask for another upload.
        message = str(e).removesuffix("; replace or remove the file")
        if message != str(e):
            message += ". Upload a PNG, JPEG or WebP image."
        raise ImageReadError(message, name) from None


def _friendly(fn: Callable[..., Image.Image]) -> Callable[..., Image.Image]:
    """Img2ImgError -> gr.Error: the message is shown in the page and the server carries on.
    gr.Error renders HTML, and messages can hold user-chosen file names: escape them."""
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Image.Image:
        try:
            return fn(*args)
        except Img2ImgError as e:
            # An expected, explained failure: one log line, no traceback.
            log.warning("web UI request refused: %s", e)
            raise gr.Error(html.escape(str(e), quote=False), title="Cannot translate this image", print_exception=False) from None

    return wrapper


def card_markdown(group: ModelGroup | None, direction: str | None, models_dir: Path) -> str:
    if group is None:
        return ""
    f = group.files.get(direction or "") or group.files[group.directions[0]]
    c = f.card
    colour = {1: "grey", 3: "RGB"}
    try:
        where = f.path.relative_to(models_dir)
    except ValueError:
        where = f.path
    others = [DIRECTION_LABELS[d] for d in group.directions if d != c.direction]
    rows = [
        ("Model", f"**{group.name}**: {c.method}, {c.arch} generator"),
        ("Direction", DIRECTION_LABELS.get(c.direction, c.direction) + (f" (also exported: {', '.join(others)})" if others else "")),
        ("Task", c.task),
        ("Input → output", f"{colour.get(c.input_channels, c.input_channels)} → {colour.get(c.output_channels, c.output_channels)}"),
        ("Trained on", f"{c.train_size} px crops (works best at that scale)"),
        ("File", f"`{where}` (img2img {c.img2img_version})"),
    ]  # fmt: skip
    items = "\n".join(f"- {k}: {html.escape(v, quote=False)}" for k, v in rows)
    return f"#### Model card\n{items}\n\n{html.escape(c.description, quote=False)}"


def policy_markdown(limits: Limits) -> str:
    return (
        f"**Limits.** Uploads up to {limits.max_file_mb} MB and {limits.max_pixels / 1e6:g} megapixels. "
        f"The result always has the size of the input: images with a side above {limits.tile} px are "
        f"translated in overlapping {limits.tile} px tiles, blended, "
        f"so large photos work in bounded memory but take longer. Requests are queued "
        f"({limits.concurrency} at a time, at most {limits.queue_size} waiting)."
    )


# --------------------------------------------------------------------------------------------
# Example inputs: real photos (scikit-image ships them), grey versions, XDoG sketches


EXAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def write_examples(folder: Path, side: int = 384) -> dict[str, list[Path]]:
    """Write the example inputs once (kept between starts) and return them per tab. Empty lists
    when scikit-image is missing: the page then shows no examples."""
    try:
        from skimage import data
    except ImportError:
        log.warning("scikit-image is not installed: the UI has no example images (pip install scikit-image)")
        return {t.key: [] for t in TABS}
    from img2img.data.derived import luminance, xdog

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {t.key: [] for t in TABS}

    def save(arr: np.ndarray, name: str, tab: str) -> None:
        path = folder / f"{name}.png"
        if not path.is_file():
            tmp = folder / f".{name}.{os.getpid()}.tmp.png"
            Image.fromarray(arr).save(tmp)
            os.replace(tmp, path)  # atomic: two servers starting together never see half a file
        out[tab].append(path)

    for name in EXAMPLE_PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        rgb = np.asarray(img)
        save(rgb, name, "style")
        save(luminance(rgb), f"{name}_grey", "colorization")
        save(xdog(rgb), f"{name}_sketch", "sketch")
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
    by_tab, skipped = discover_models(models_dir)
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
                    _build_tab(spec, by_tab[spec.key], examples[spec.key], sessions, limits, models_dir)
        gr.Markdown(policy_markdown(limits))
    # One queue for every translate event (shared concurrency_id), bounded both ways.
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return demo


def _build_tab(
    spec: TabSpec,
    groups: list[ModelGroup],
    examples: list[Path],
    sessions: SessionCache,
    limits: Limits,
    models_dir: Path,
) -> None:
    by_label = {g.label: g for g in groups}
    first = groups[0] if groups else None
    style = spec.key == "style"

    if first is None:
        gr.Markdown(
            f"### No {spec.title.lower()} model yet\nNo exported model for this tab was found in `{models_dir}`. "
            f"Train one and export it to ONNX there, then restart `img2img serve`:\n"
            f"```bash\n{spec.train_hint.format(models=models_dir)}\n```",
            elem_id=f"{spec.key}-missing",
        )

    def pick(label: str | None, direction: str | None) -> ModelFile:
        group = by_label.get(label or "") if label else first
        if group is None:
            if first is None:
                raise Img2ImgError(
                    f"no {spec.title.lower()} model is installed on this server; "
                    f"train and export one (see the {spec.title} tab)"
                )
            raise Img2ImgError(f"unknown model {label!r}; choose one of: {', '.join(by_label)}")
        direction = direction or group.directions[0]
        if direction not in group.files:
            raise Img2ImgError(f"{group.label} has no {direction} generator exported; choose {' or '.join(group.directions)}")
        return group.files[direction]

    # The workspace stays in the page even without a model, hidden, so the API endpoint exists
    # and answers with the instructions above rather than "no such endpoint".
    with gr.Column(visible=first is not None):
        with gr.Row():
            model_in = gr.Dropdown(
                [g.label for g in groups], value=first.label if first else None, label="Model",
                interactive=len(groups) > 1, elem_id=f"{spec.key}-model",
            )  # fmt: skip
            direction_in = None
            if style:
                dirs = first.directions if first else list(DIRECTION_LABELS)
                direction_in = gr.Radio(
                    [(DIRECTION_LABELS[d], d) for d in dirs], value=dirs[0], label="Direction",
                    info="CycleGAN maps both ways: A → B and B → A", elem_id=f"{spec.key}-direction",
                )  # fmt: skip
        with gr.Row(equal_height=True):
            with gr.Column():
                if spec.key == "sketch":
                    with gr.Tabs():
                        with gr.Tab("Upload a sketch"):
                            image_in = gr.Image(type="filepath", image_mode=None, label=spec.input_label,
                                                sources=["upload", "clipboard"], elem_id=f"{spec.key}-input")
                            run = gr.Button("Translate", variant="primary", elem_id=f"{spec.key}-run")
                        with gr.Tab("Draw"):
                            pad = gr.Sketchpad(
                                type="pil", image_mode="RGB", label="Pick the brush (left), then draw dark lines",
                                brush=gr.Brush(default_size=3, colors=["#000000", "#555555"], color_mode="fixed"),
                                eraser=gr.Eraser(default_size=12), canvas_size=(512, 512), layers=False,
                                elem_id=f"{spec.key}-pad",
                            )  # fmt: skip
                            run_drawing = gr.Button("Translate drawing", variant="primary", elem_id=f"{spec.key}-run-drawing")
                else:
                    image_in = gr.Image(type="filepath", image_mode=None, label=spec.input_label,
                                        sources=["upload", "clipboard"], elem_id=f"{spec.key}-input")
                    run = gr.Button("Translate", variant="primary", elem_id=f"{spec.key}-run")
            with gr.Column():
                output = gr.Image(type="pil", format="png", label="Result (PNG, same size as the input)",
                                  interactive=False, buttons=["download", "fullscreen"], elem_id=f"{spec.key}-output")
        if examples:
            gr.Examples(
                [[str(p)] for p in examples], inputs=[image_in], label="Examples (real photos)",
                example_labels=[p.stem.replace("_", " ") for p in examples], api_visibility="private",
            )  # fmt: skip
        card = gr.Markdown(card_markdown(first, first.directions[0] if first else None, models_dir),
                           elem_classes=["img2img-card"], elem_id=f"{spec.key}-card")

    # The parameter names are the API's (client.predict(image=..., model=..., direction=...));
    # the None defaults make model and direction optional there.
    def translate(image: Any, model: str | None = None, direction: str | None = None) -> Image.Image:
        entry = pick(model, direction)
        img = read_upload(image, limits)
        return sessions.get(entry.path).translate([img])[0]

    # preprocess=False: read_upload() decodes the file itself (limits, friendly errors).
    inputs = [image_in, model_in] + ([direction_in] if direction_in is not None else [])
    run.click(
        _friendly(translate), inputs=inputs, outputs=output, api_name=spec.api_name,
        preprocess=False, concurrency_id="translate", concurrency_limit=limits.concurrency,
    )  # fmt: skip

    if spec.key == "sketch":

        def translate_drawing(drawing: dict | None, model: str | None = None) -> Image.Image:
            composite = (drawing or {}).get("composite")
            if composite is None:
                raise Img2ImgError("the canvas is empty: draw a sketch first")
            entry = pick(model, None)
            return sessions.get(entry.path).translate([composite])[0]

        run_drawing.click(
            _friendly(translate_drawing), inputs=[pad, model_in], outputs=output, api_visibility="private",
            concurrency_id="translate", concurrency_limit=limits.concurrency,
        )  # fmt: skip

    def show_card(label: str | None, direction: str | None = None) -> str:
        return card_markdown(by_label.get(label or ""), direction, models_dir)

    if direction_in is not None:

        def on_model(label: str | None):
            group = by_label.get(label or "")
            dirs = group.directions if group else list(DIRECTION_LABELS)
            return gr.Radio(choices=[(DIRECTION_LABELS[d], d) for d in dirs], value=dirs[0]), card_markdown(group, dirs[0], models_dir)

        model_in.change(on_model, inputs=model_in, outputs=[direction_in, card], api_visibility="private", queue=False)
        direction_in.change(show_card, inputs=[model_in, direction_in], outputs=card, api_visibility="private", queue=False)
    else:
        model_in.change(show_card, inputs=model_in, outputs=card, api_visibility="private", queue=False)


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
