"""The page's tabs, described as data (TabSpec) and built by one function (build_tab); the
request handling they share: reading uploads within the Limits, and errors shown in the page.

Uploads are read by our own code, not Gradio's preprocessing (preprocess=False on the translate
events): load_image() applies the pixel limit before decoding, and a corrupt or non-image file
becomes a gr.Error message in the page instead of an opaque server error.
"""

from __future__ import annotations

import functools
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import gradio as gr
from PIL import Image

from img2img import Img2ImgError
from img2img.app.models import DIRECTION_LABELS, ModelFile, ModelGroup, SessionCache
from img2img.data.images import ImageReadError, load_image
from img2img.io import channel_name
from img2img.runtime import DEFAULT_TILE

log = logging.getLogger("img2img")

CANVAS_SIZE = (512, 512)  # (width, height) of the drawing canvas, and so of a drawing's result


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


@dataclass(frozen=True)
class TabSpec:
    key: str                 # element ids start with it: {key}-input, {key}-run, {key}-output, ...
    title: str
    tasks: tuple[str, ...]   # model card tasks shown in this tab
    api_name: str            # the endpoint: /{api_name}
    input_label: str
    input_mode: Literal["photo", "grey", "sketch"]  # what the input looks like (the examples are made so)
    train_hint: str          # shown when no model is found
    has_directions: bool = False  # a direction choice (CycleGAN maps both ways); also an API parameter
    has_canvas: bool = False      # a drawing canvas beside the upload (its own button; not in the API)


TABS = (
    TabSpec("style", "Style transfer", ("style", "paired"), "style_transfer", "Photo", "photo",
            "img2img train --config cyclegan --data path/to/horse2zebra   # trainA/ + trainB/ (or --dataset horse2zebra)\n"
            "img2img export checkpoints/cyclegan -o {models}/cyclegan_AtoB.onnx\n"
            "img2img export checkpoints/cyclegan --direction BtoA -o {models}/cyclegan_BtoA.onnx",
            has_directions=True),
    TabSpec("colorization", "Colorization", ("colorization",), "colorize", "Grey photo", "grey",
            "img2img train --config colorization --data path/to/photos   # any folder of colour photos\n"
            "img2img export checkpoints/colorization -o {models}/colorization.onnx"),
    TabSpec("sketch", "Sketch to photo", ("sketch2photo",), "sketch_to_photo", "Sketch", "sketch",
            "img2img train --config sketch2photo --data path/to/photos   # any folder of photos; sketches are derived\n"
            "img2img export checkpoints/sketch2photo -o {models}/sketch2photo.onnx",
            has_canvas=True),
)  # fmt: skip
TAB_TASKS = {t.key: t.tasks for t in TABS}  # what discover_models sorts the model files by


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
    try:
        where = f.path.relative_to(models_dir)
    except ValueError:
        where = f.path
    others = [DIRECTION_LABELS[d] for d in group.directions if d != c.direction]
    rows = [
        ("Model", f"**{group.name}**: {c.method}, {c.arch} generator"),
        ("Direction", DIRECTION_LABELS.get(c.direction, c.direction) + (f" (also exported: {', '.join(others)})" if others else "")),
        ("Task", c.task),
        ("Input → output", f"{channel_name(c.input_channels)} → {channel_name(c.output_channels)}"),
        ("Trained on", f"{c.train_size} px crops (works best at that scale)"),
        ("File", f"`{where}` (img2img {c.img2img_version})"),
    ]  # fmt: skip
    items = "\n".join(f"- {k}: {html.escape(v, quote=False)}" for k, v in rows)
    return f"#### Model card\n{items}\n\n{html.escape(c.description, quote=False)}"


# --------------------------------------------------------------------------------------------
# The tab


def _direction_choices(group: ModelGroup | None) -> list[tuple[str, str]]:
    return [(DIRECTION_LABELS[d], d) for d in (group.directions if group else DIRECTION_LABELS)]


def _upload(spec: TabSpec) -> tuple[gr.Image, gr.Button]:
    image_in = gr.Image(type="filepath", image_mode=None, label=spec.input_label,
                        sources=["upload", "clipboard"], elem_id=f"{spec.key}-input")  # fmt: skip
    return image_in, gr.Button("Translate", variant="primary", elem_id=f"{spec.key}-run")


def _canvas(spec: TabSpec) -> tuple[gr.Sketchpad, gr.Button]:
    pad = gr.Sketchpad(
        type="pil", image_mode="RGB", label="Pick the brush (left), then draw dark lines",
        brush=gr.Brush(default_size=3, colors=["#000000", "#555555"], color_mode="fixed"),
        eraser=gr.Eraser(default_size=12), canvas_size=CANVAS_SIZE, layers=False, elem_id=f"{spec.key}-pad",
    )  # fmt: skip
    return pad, gr.Button("Translate drawing", variant="primary", elem_id=f"{spec.key}-run-drawing")


def build_tab(
    spec: TabSpec,
    groups: list[ModelGroup],
    examples: list[Path],
    sessions: SessionCache,
    limits: Limits,
    models_dir: Path,
) -> None:
    """One tab's components and events, inside the current gr.Tab. What differs between tabs is
    in the spec: the direction choice (has_directions), the drawing canvas (has_canvas)."""
    by_label = {g.label: g for g in groups}
    first = groups[0] if groups else None

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
            if spec.has_directions:
                choices = _direction_choices(first)
                direction_in = gr.Radio(
                    choices, value=choices[0][1], label="Direction",
                    info="CycleGAN maps both ways: A → B and B → A", elem_id=f"{spec.key}-direction",
                )  # fmt: skip
        with gr.Row(equal_height=True):
            with gr.Column():
                if spec.has_canvas:
                    with gr.Tabs():
                        with gr.Tab(f"Upload a {spec.input_label.lower()}"):
                            image_in, run = _upload(spec)
                        with gr.Tab("Draw"):
                            pad, run_drawing = _canvas(spec)
                else:
                    image_in, run = _upload(spec)
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
    # Every translate event shares one concurrency_id: one queue over the tabs, bounded both ways.
    inputs = [image_in, model_in] + ([direction_in] if direction_in is not None else [])
    run.click(
        _friendly(translate), inputs=inputs, outputs=output, api_name=spec.api_name,
        preprocess=False, concurrency_id="translate", concurrency_limit=limits.concurrency,
    )  # fmt: skip

    if spec.has_canvas:

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

        def on_model(label: str | None) -> tuple[gr.Radio, str]:
            group = by_label.get(label or "")
            choices = _direction_choices(group)
            return gr.Radio(choices=choices, value=choices[0][1]), card_markdown(group, choices[0][1], models_dir)

        model_in.change(on_model, inputs=model_in, outputs=[direction_in, card], api_visibility="private", queue=False)
        direction_in.change(show_card, inputs=[model_in, direction_in], outputs=card, api_visibility="private", queue=False)
    else:
        model_in.change(show_card, inputs=model_in, outputs=card, api_visibility="private", queue=False)
