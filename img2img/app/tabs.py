"""The page's tabs, described as data (TabSpec) and built by one function (build_tab); the
request handling they share: reading uploads within the Limits, strength, progress and
cancellation, result files named after the input, and errors shown in the page.

Uploads are read by our own code, not Gradio's preprocessing (preprocess=False on the translate
and upload-check events): load_image() applies the pixel limit before decoding, and a corrupt or
non-image file becomes a gr.Error message in the page instead of an opaque server error.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import math
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import gradio as gr
from PIL import Image

from img2img import Img2ImgError
from img2img.app.models import ModelFile, ModelGroup, SessionCache
from img2img.data.images import ImageReadError, load_image
from img2img.io import channel_name
from img2img.runtime import DEFAULT_TILE
from img2img.video import VideoError, VideoInfo, probe, translate_video

log = logging.getLogger("img2img")

CANVAS_SIZE = (512, 512)  # (width, height) of the drawing canvas, and so of a drawing's result
# The canvas component's height: the 512 px canvas plus its toolbar, so it opens at about 100 %
# zoom in a half-page column instead of shrunk to fit Gradio's default height.
CANVAS_HEIGHT = 620
LINE_COLOURS = ["#000000", "#555555"]  # the canvas's pens for lines
# Sketch models with colour hints (ModelCard.takes_colour_hints): a starting palette of common
# photo colours (sky, foliage, grass, earth, brick, sand, skin, water); a picker offers any other.
HINT_COLOURS = ["#7fa7d9", "#3f6b2a", "#7a9a3a", "#6b4a2b", "#a0442c", "#d9c48f", "#e0b49a", "#2f5f7f"]


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server."""

    max_file_mb: int = 20             # upload size (Gradio rejects larger files at upload)
    max_pixels: int = 40_000_000      # decompression-bomb guard, checked from the header before decoding
    tile: int = DEFAULT_TILE          # sides above this are translated in overlapping tiles
    # Requests waiting; more get "queue is full". A waiting request holds only its upload (a few
    # MB at most), so 50 simultaneous users all get served (issue 13: 22 of 50 refused at 16).
    queue_size: int = 64
    concurrency: int = 1              # translations running at once, over all tabs (each uses every core)
    # Videos (style tab): a 20 s clip at 480 px takes about 2 minutes on 2 CPU cores.
    max_video_mb: int = 100
    max_video_seconds: int = 20
    video_side: int = 480             # frames are scaled so that their longer side is at most this

    @property
    def max_upload_bytes(self) -> int:
        """What Gradio accepts at upload, for any file; each kind is then checked by its own limit."""
        return max(self.max_file_mb, self.max_video_mb) * 1024 * 1024


@dataclass(frozen=True)
class TabSpec:
    key: str                 # element ids start with it: {key}-input, {key}-run, {key}-output, ...
    title: str
    tasks: tuple[str, ...]   # model card tasks shown in this tab
    api_name: str            # the endpoint: /{api_name}
    summary: str             # the plain-words line under the tab: what goes in, what comes out
    input_label: str
    input_mode: Literal["photo", "grey", "sketch"]  # what the input looks like (the examples are made so)
    train_hint: str          # shown when no model is found
    has_directions: bool = False  # a direction choice (CycleGAN maps both ways); also an API parameter
    has_canvas: bool = False      # a drawing canvas beside the upload (its own button; not in the API)
    has_video: bool = False       # a video upload below the photo one (its own endpoint: /{api_name}_video)


TABS = (
    TabSpec("style", "Style transfer", ("style", "paired"), "style_transfer",
            "**A photo in, a painting out.** Upload, paste or take a photo; the model repaints it in the "
            "style it learnt. Pick the direction, and how strong the effect is.",
            "Photo", "photo",
            "img2img train --config cyclegan --data path/to/horse2zebra   # trainA/ + trainB/ (or --dataset horse2zebra)\n"
            "img2img export checkpoints/cyclegan -o {models}/cyclegan_AtoB.onnx\n"
            "img2img export checkpoints/cyclegan --direction BtoA -o {models}/cyclegan_BtoA.onnx",
            has_directions=True, has_video=True),
    TabSpec("colorization", "Colorization", ("colorization",), "colorize",
            "**A black-and-white photo in, the same photo in colour out.** A colour photo works too: it is "
            "made grey first.",
            "Black-and-white photo", "grey",
            "img2img train --config colorization --data path/to/photos   # any folder of colour photos\n"
            "img2img export checkpoints/colorization -o {models}/colorization.onnx"),
    TabSpec("sketch", "Sketch to photo", ("sketch2photo",), "sketch_to_photo",
            "**A line drawing in, a photo-like picture out.** Upload a sketch (dark lines on white), or open "
            "*Draw* and draw one. The shipped model does best on buildings and streets, most of its training "
            "photos; other subjects get plausible textures in muted colours.",
            "Sketch", "sketch",
            "img2img train --config sketch2photo --data path/to/photos   # any folder of photos; sketches are derived\n"
            "img2img export checkpoints/sketch2photo -o {models}/sketch2photo.onnx",
            has_canvas=True),
)  # fmt: skip
TAB_TASKS = {t.key: t.tasks for t in TABS}  # what discover_models sorts the model files by


@dataclass(frozen=True)
class Serving:
    """What every tab's requests share, built once by build_app."""

    sessions: SessionCache
    limits: Limits
    models_dir: Path
    # Translations computing at once. Gradio's concurrency limit alone does not bound this: a
    # cancelled request frees its slot at once while its thread is still computing (it stops at
    # its next progress check), so the next request waits here for it.
    computing: threading.BoundedSemaphore


# --------------------------------------------------------------------------------------------
# Requests


def _uploaded(payload: Any, what: str = "image", max_mb: int | None = None) -> tuple[Path, str]:
    """(file on the server, name the user gave it) from an unpreprocessed gr.Image or gr.Video
    value (a FileData dict), its size checked against max_mb. Gradio refuses files over max_file_size at upload;
    each kind of file has its own, smaller limit, checked here (also for apps mounted without
    that launch() setting)."""
    if isinstance(payload, dict) and payload.get("path"):
        path, name = Path(payload["path"]), str(payload.get("orig_name") or Path(payload["path"]).name)
    elif isinstance(payload, str) and payload:
        path, name = Path(payload), Path(payload).name
    else:
        raise Img2ImgError(f"no {what}: upload one (or pick an example) first")
    if max_mb is not None:
        try:
            size = path.stat().st_size
        except OSError:
            raise Img2ImgError(f"{name}: the upload is gone from the server; upload it again") from None
        if size > max_mb * 1024 * 1024:
            raise Img2ImgError(f"{name}: {size / 2**20:.1f} MB is over the {max_mb} MB {what} upload limit")
    return path, name


def read_upload(payload: Any, limits: Limits) -> Image.Image:
    """The uploaded image as RGB, or Img2ImgError saying why it cannot be used."""
    path, name = _uploaded(payload, "image", limits.max_file_mb)
    try:
        # `name` only labels errors; the bytes come from the server-side copy.
        return load_image(name, max_pixels=limits.max_pixels, data=path.read_bytes())
    except ImageReadError as e:
        # load_image speaks to CLI users ("replace or remove the file"); here, ask for another upload.
        message = str(e).removesuffix("; replace or remove the file")
        if message != str(e):
            message += ". Upload a PNG, JPEG or WebP image."
        raise ImageReadError(message, name) from None


# Audio codecs a browser plays in each of the UI's output containers; other audio is left out of
# the UI's result (the CLI keeps the input's container, so it copies any audio).
PLAYABLE_AUDIO = {".mp4": {"aac", "mp3", "opus", "flac"}, ".webm": {"opus", "vorbis"}}


def _named(e: VideoError, path: Path, name: str) -> VideoError:
    """The error with the user's file name in place of the upload's path on the server."""
    return VideoError(str(e).replace(str(path), name))


def check_video_upload(payload: Any, limits: Limits) -> tuple[Path, str, VideoInfo]:
    """(file, user's name, what the container says) of an uploaded video within the Limits, or
    Img2ImgError. A clip that does not declare its length is held to it while decoding."""
    path, name = _uploaded(payload, "video", limits.max_video_mb)
    try:
        info = probe(path)
    except VideoError as e:
        raise _named(e, path, name) from None
    seconds = info.duration or (info.frames / info.fps if info.frames else 0)
    if seconds > limits.max_video_seconds + 0.5:  # + 0.5: containers round the duration
        raise VideoError(f"{name}: {seconds:.0f} s is over the {limits.max_video_seconds} s video limit; cut it shorter")
    return path, name, info


def check_strength(strength: float | None) -> float:
    """The strength in percent (None: 100), or Img2ImgError for values outside 0..100."""
    value = 100.0 if strength is None else float(strength)
    if not 0 <= value <= 100:
        raise Img2ImgError(f"strength must be between 0 and 100 (percent), got {strength}")
    return value


def blend(before: Image.Image, after: Image.Image, strength: float) -> Image.Image:
    """The model's output mixed with its input: 0 % is the input, 100 % the output."""
    if strength >= 100:
        return after
    if strength <= 0:
        return before
    return Image.blend(before.convert(after.mode), after, strength / 100)


class RequestGone(Exception):
    """Raised from the progress callback when Gradio has dropped the request: it stops the
    translation (the Translator lets a callback's exception end it)."""


def request_alive() -> Callable[[], bool]:
    """A check for the running translation to call between network passes: False once Gradio
    has dropped this request (stop pressed, a client's cancel, the page closed).

    Gradio runs a sync handler in a worker thread and cannot stop it: a cancel frees the
    request's queue slot at once and a disconnect only marks its event dead, while the thread
    computes on (maintainers in gradio-app/gradio#3518 and #8188). Gradio 6 has no public flag
    for it, so this reads the queue's own state for the current event (LocalContext,
    Queue.active_jobs, Event.alive: internals, hence the <7 pin; the cancellation test in
    tests/test_app.py fails if they change). Outside a queued event it always says True."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return lambda: True

    def alive() -> bool:
        for job in list(queue.active_jobs):
            for event in job or ():
                if event._id == event_id:
                    return bool(event.alive)
        return False  # no longer among the running jobs: cancelled

    return alive


def result_name(upload_name: str, word: str, suffix: str = ".png") -> str:
    """coffee.jpg + colorized -> coffee_colorized.png (the download's file name). The user's
    name is reduced to safe characters: it becomes a path on the server."""
    stem = re.sub(r"[^\w.-]+", "_", Path(upload_name).stem)[:80].strip("._") or "image"
    return f"{stem}_{word}{suffix}"


def new_result_folder(results: Path) -> Path:
    """One folder per request in the results cache, so that the download keeps its nice name."""
    folder = results / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


@contextlib.contextmanager
def computing(serving: Serving, name: str, progress: gr.Progress, unit: str) -> Iterator[Callable[[int, int], None]]:
    """Hold the server's compute slot for one translation and give it its progress callback,
    which stops the translation (RequestGone) once Gradio has dropped the request."""
    alive = request_alive()

    def report(done: int, total: int) -> None:
        if not alive():
            raise RequestGone(f"{name}: stopped after {done} of {total or '?'} {unit}")
        progress((done, total or None), desc=f"Translating {name}", unit=unit)

    with serving.computing:
        if not alive():  # cancelled while waiting for a running translation to stop
            raise RequestGone(f"{name}: cancelled before it started")
        yield report


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Img2ImgError -> gr.Error: the message is shown in the page and the server carries on.
    gr.Error renders HTML, and messages can hold user-chosen file names: escape them."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except RequestGone as e:
            log.info("web UI request cancelled: %s", e)
            raise gr.Error("The request was cancelled.", print_exception=False) from None
        except Img2ImgError as e:
            # An expected, explained failure: one log line, no traceback.
            log.warning("web UI request refused: %s", e)
            raise gr.Error(html.escape(str(e), quote=False), title="Cannot translate this image", print_exception=False) from None

    return wrapper


def card_markdown(group: ModelGroup | None, direction: str | None, models_dir: Path) -> str:
    """The "Model details" text: what a curious user or a developer wants, kept out of the way."""
    if group is None:
        return ""
    f = group.files.get(direction or "") or group.files[group.directions[0]]
    c = f.card
    try:
        where = f.path.relative_to(models_dir)
    except ValueError:
        where = f.path
    others = [group.files[d].route.label for d in group.directions if d != c.direction]
    rows = [
        ("Model", f"**{group.name}**: {c.method}, {c.arch} generator"),
        ("Maps", f.route.label + (f" (also exported: {', '.join(others)})" if others else "")),
        ("Task", f"{c.task}, direction {c.direction}"),
        ("Input → output", f"{channel_name(c.input_channels)}{' (a drawing with colour hints)' if c.takes_colour_hints else ''} "
                           f"→ {channel_name(c.output_channels)}"),
        ("Trained on", f"{c.train_size} px crops (works best at that scale)"),
        ("Normalization", c.normalization),
        ("File", f"`{where}` (img2img {c.img2img_version})"),
    ]  # fmt: skip
    items = "\n".join(f"- {k}: {html.escape(v, quote=False)}" for k, v in rows)
    return f"{items}\n\n{html.escape(c.description, quote=False)}"


# --------------------------------------------------------------------------------------------
# The tab


def _direction_choices(group: ModelGroup | None) -> list[tuple[str, str]]:
    if group is None:
        return [("A → B", "AtoB")]
    return [(group.files[d].route.label, d) for d in group.directions]


def _upload(spec: TabSpec) -> tuple[gr.Image, gr.Button]:
    image_in = gr.Image(type="filepath", image_mode=None, label=spec.input_label,
                        sources=["upload", "webcam", "clipboard"], elem_id=f"{spec.key}-input")  # fmt: skip
    return image_in, gr.Button("Translate", variant="primary", elem_id=f"{spec.key}-run")


def _blank_canvas() -> dict[str, Any]:
    """The canvas's value when empty: a white background. With a background the editor opens
    with its brush selected (with none it opens on its image tool and ignores strokes until
    Brush is clicked), and the built-in clear is replaced by a Clear button that returns this."""
    return {"background": Image.new("RGB", CANVAS_SIZE, "white"), "layers": [], "composite": None}


def _drawing(value: dict | None) -> Image.Image:
    composite = (value or {}).get("composite")
    if composite is None or composite.convert("L").getextrema()[0] > 250:  # nothing darker than white
        raise Img2ImgError("the canvas is empty: draw a sketch first")
    return composite.convert("RGB")


def build_tab(spec: TabSpec, groups: list[ModelGroup], examples: list[Path], serving: Serving) -> None:
    """One tab's components and events, inside the current gr.Tab. What differs between tabs is
    in the spec: the direction choice (has_directions), the drawing canvas (has_canvas)."""
    by_label = {g.label: g for g in groups}
    first = groups[0] if groups else None
    limits, models_dir = serving.limits, serving.models_dir

    gr.Markdown(spec.summary, elem_id=f"{spec.key}-summary")
    hints = any(f.card.takes_colour_hints for g in groups for f in g.files.values())
    if hints:
        gr.Markdown(
            "**Colour hints.** Paint strokes of colour onto the drawing (on your file, or with a wide brush on the "
            "canvas): the model takes their colour and brightness for the regions they touch. Without any, it "
            "chooses the colours itself.",
            elem_id=f"{spec.key}-hints",
        )  # fmt: skip
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
                direction_in = gr.Radio(choices, value=choices[0][1], label="Direction", elem_id=f"{spec.key}-direction")
            strength_in = gr.Slider(
                0, 100, value=100, step=1, label="Strength (%)", info="100: the model's result; lower mixes your input back in",
                elem_id=f"{spec.key}-strength",
            )  # fmt: skip
        with gr.Row():
            with gr.Column():
                if spec.has_canvas:
                    with gr.Tabs():
                        with gr.Tab(f"Upload a {spec.input_label.lower()}"):
                            image_in, run = _upload(spec)
                        with gr.Tab("Draw"):
                            pad = gr.Sketchpad(
                                value=_blank_canvas(), type="pil", image_mode="RGB",
                                label="Draw dark lines" + (", then paint colours with a wide brush" if hints else "")
                                      + " (undo and eraser in the toolbar)",
                                brush=gr.Brush(default_size=3, colors=LINE_COLOURS + (HINT_COLOURS if hints else []),
                                               color_mode="defaults" if hints else "fixed"),
                                eraser=gr.Eraser(default_size=12), canvas_size=CANVAS_SIZE, height=CANVAS_HEIGHT,
                                layers=False, transforms=(), elem_id=f"{spec.key}-pad", elem_classes=["img2img-canvas"],
                            )  # fmt: skip
                            with gr.Row():
                                clear = gr.Button("Clear", elem_id=f"{spec.key}-clear", scale=0, min_width=100)
                                run_drawing = gr.Button("Translate drawing", variant="primary", elem_id=f"{spec.key}-run-drawing")
                else:
                    image_in, run = _upload(spec)
                example_set = None
                if examples:
                    example_set = gr.Examples(
                        [[str(p)] for p in examples], inputs=[image_in], label="Examples (real photos): click one to translate it",
                        elem_id=f"{spec.key}-examples",
                    )  # fmt: skip
            with gr.Column():
                compare = gr.ImageSlider(
                    label="Before / after (drag the handle)", type="filepath", interactive=False,
                    buttons=["fullscreen"], elem_id=f"{spec.key}-compare",
                )  # fmt: skip
                output = gr.Image(
                    type="filepath", format="png", label="Result (PNG, same size as the input)", interactive=False,
                    buttons=["download", "fullscreen"], height=240, elem_id=f"{spec.key}-output",
                )  # fmt: skip
        video_in = video_run = video_out = None
        if spec.has_video:
            gr.Markdown(
                f"**A video in, the same video translated out.** Up to {limits.max_video_seconds} s and {limits.max_video_mb} MB "
                f"(MP4, MOV, MKV, WebM, AVI); frames are scaled to at most {limits.video_side} px on the longer side, "
                "the frame rate and the sound are kept, and the frames are blended along the motion so the painting "
                "does not flicker. Strength applies to photos only.",
                elem_id=f"{spec.key}-video-summary",
            )  # fmt: skip
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="Video", sources=["upload", "webcam"], elem_id=f"{spec.key}-video-input")
                    video_run = gr.Button("Translate video", variant="primary", elem_id=f"{spec.key}-video-run")
                with gr.Column():
                    video_out = gr.Video(label="Result (MP4 or WebM, sound kept)", interactive=False, buttons=["download"],
                                         elem_id=f"{spec.key}-video-output")  # fmt: skip
        pair = gr.State()  # (before, result) for the slider: a State, so the API returns just the result
        with gr.Accordion("Model details", open=False, elem_id=f"{spec.key}-details"):
            card = gr.Markdown(card_markdown(first, first.directions[0] if first else None, models_dir),
                               elem_classes=["img2img-card"], elem_id=f"{spec.key}-card")

    # Results are written straight into Gradio's cache (Gradio serves them from there without a
    # copy, and the page's delete_cache removes them), one folder per request, named for download.
    results = Path(output.GRADIO_CACHE) / "img2img"

    def run_translation(img: Image.Image, name: str, entry: ModelFile, strength: float | None, progress: gr.Progress) -> tuple[str, tuple[str, str]]:
        strength = check_strength(strength)
        with computing(serving, name, progress, "tiles") as report:
            translated = serving.sessions.get(entry.path).translate([img], progress=report)[0] if strength > 0 else img
            out = blend(img, translated, strength)
        folder = new_result_folder(results)
        result, before = folder / result_name(name, entry.route.result_word), folder / "input.png"
        out.save(result, format="PNG")
        img.save(before, format="PNG", compress_level=1)  # only shown in the slider: fast beats small
        return str(result), (str(before), str(result))

    # The parameter names are the API's (client.predict(image=..., model=..., strength=...)); the
    # defaults make all but the image optional there. Progress is Gradio's, not an API parameter.
    if spec.has_directions:

        def translate(image: Any, model: str | None = None, direction: str | None = None, strength: float | None = 100,
                      progress: gr.Progress = gr.Progress()) -> tuple[str, tuple[str, str]]:  # fmt: skip
            """Translate one image; returns the result as a PNG of the input's size."""
            entry = pick(model, direction)
            return run_translation(read_upload(image, limits), _uploaded(image)[1], entry, strength, progress)

    else:

        def translate(image: Any, model: str | None = None, strength: float | None = 100,
                      progress: gr.Progress = gr.Progress()) -> tuple[str, tuple[str, str]]:  # fmt: skip
            """Translate one image; returns the result as a PNG of the input's size."""
            entry = pick(model, None)
            return run_translation(read_upload(image, limits), _uploaded(image)[1], entry, strength, progress)

    def show_pair(value: tuple[str, str] | None) -> tuple[str, str] | None:
        return value

    # preprocess=False: read_upload() decodes the file itself (limits, friendly errors).
    # Every translate event shares one concurrency_id: one queue over the tabs, bounded both ways.
    inputs = [image_in, model_in, *([direction_in] if direction_in is not None else []), strength_in]
    translate_event: dict[str, Any] = {
        "inputs": inputs, "outputs": [output, pair], "preprocess": False,
        "concurrency_id": "translate", "concurrency_limit": limits.concurrency,
    }  # fmt: skip
    run.click(_friendly(translate), api_name=spec.api_name, **translate_event).success(
        show_pair, pair, compare, queue=False, api_visibility="private"
    )
    if example_set is not None:
        # An example runs with the model, direction and strength chosen now, through the same
        # queue. (Gradio's cached examples would replay the first model's result for any choice.)
        example_set.load_input_event.then(_friendly(translate), api_visibility="private", **translate_event).success(
            show_pair, pair, compare, queue=False, api_visibility="private"
        )

    # A bad upload is refused when it arrives, with the message Translate would give, and removed
    # (it would otherwise sit there as a broken thumbnail). Its own small queue: a check waits for
    # no translation, and a burst of uploads decodes at most two images at once.
    def check_upload(image: Any) -> None:
        if image is not None:
            read_upload(image, limits)

    image_in.change(
        _friendly(check_upload), inputs=image_in, outputs=None, preprocess=False, show_progress="hidden",
        concurrency_id="check_upload", concurrency_limit=2, api_visibility="private",
    ).failure(lambda: None, outputs=image_in, queue=False, api_visibility="private")  # fmt: skip

    if spec.has_canvas:

        def translate_drawing(drawing: dict | None, model: str | None = None, strength: float | None = 100,
                              progress: gr.Progress = gr.Progress()) -> tuple[str, tuple[str, str]]:  # fmt: skip
            return run_translation(_drawing(drawing), "drawing", pick(model, None), strength, progress)

        run_drawing.click(
            _friendly(translate_drawing), inputs=[pad, model_in, strength_in], outputs=[output, pair],
            api_visibility="private", concurrency_id="translate", concurrency_limit=limits.concurrency,
        ).success(show_pair, pair, compare, queue=False, api_visibility="private")  # fmt: skip
        clear.click(_blank_canvas, outputs=pad, queue=False, api_visibility="private")

    if spec.has_video:

        def translate_clip(video: Any, model: str | None = None, direction: str | None = None,
                           progress: gr.Progress = gr.Progress()) -> str:  # fmt: skip
            """Translate one video (the style tab's model and direction); returns an MP4 (a WebM
            for a WebM upload) with the input's frame rate and frame count and its sound."""
            entry = pick(model, direction)
            path, name, info = check_video_upload(video, limits)
            suffix = ".webm" if path.suffix.lower() == ".webm" else ".mp4"  # containers a browser plays
            result = new_result_folder(results) / result_name(name, entry.route.result_word, suffix)
            with computing(serving, name, progress, "frames") as report:
                try:
                    translate_video(
                        serving.sessions.get(entry.path), path, result, max_side=limits.video_side,
                        max_frames=math.ceil(limits.max_video_seconds * info.fps) + 1,
                        audio=info.audio in PLAYABLE_AUDIO[suffix], progress=report,
                    )  # fmt: skip
                except VideoError as e:
                    raise _named(e, path, name) from None
            return str(result)

        def check_clip(video: Any) -> None:
            if video is not None:
                check_video_upload(video, limits)

        video_inputs = [video_in, model_in, *([direction_in] if direction_in is not None else [])]
        video_run.click(
            _friendly(translate_clip), inputs=video_inputs, outputs=video_out, preprocess=False,
            api_name=f"{spec.api_name}_video", concurrency_id="translate", concurrency_limit=limits.concurrency,
        )  # fmt: skip
        video_in.change(
            _friendly(check_clip), inputs=video_in, outputs=None, preprocess=False, show_progress="hidden",
            concurrency_id="check_upload", concurrency_limit=2, api_visibility="private",
        ).failure(lambda: None, outputs=video_in, queue=False, api_visibility="private")  # fmt: skip

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
