"""Videos in and out (`img2img translate` on .mp4/.mov/.mkv/.webm/.avi): decode with PyAV,
translate frame by frame, keep the output stable over time, encode a video with the input's
frame rate, size and frame count, and copy its audio.

Temporal modes (measured in benchmarks/video_speed.py and docs/inference.md):
- "flow" (default): flow-guided blending of the outputs. Frame t's output is blended with the
  previous blended output moved onto frame t by the optical flow of the *input*:
      O'_t = (1 - w) O_t + w warp(O'_{t-1}),  w = alpha * exp(-(e / tau)^2),
  where e is how badly the flow explains the input (|I_t - warp(I_{t-1})|, mean over RGB):
  where the flow fails (occlusions, cuts) w -> 0 and the frame's own output is kept, so a cut
  does not ghost. This damps the texture "popping" of per-frame translation (halves it here).
- "ema": instance-norm statistics smoothed over time, each layer normalizing frame t by
      m_t = d * m_{t-1} + (1 - d) * mean_t,   v_t = d * v_{t-1} + (1 - d) * var_t,
  through the runtime's fixed-statistics graphs (the ones tiles share statistics with).
  Measured here it does not reduce flicker (per-frame instance norm is not where the flicker
  comes from, and after a fade from black the lagging statistics over-amplify): an option.
- "off": every frame by itself.

Frames stream through: one decoded frame, its output, the previous one and the encoder's few
frames of lookahead are in memory, whatever the length of the clip. The output is written to a
temp file beside the final name and renamed at the end, so a failure leaves no partial video
under that name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from PIL import Image

from img2img import Img2ImgError
from img2img.io import atomic_write
from img2img.runtime.onnx_graphs import LayerStats
from img2img.runtime.pixels import prepare

if TYPE_CHECKING:
    import av

    from img2img.runtime import Translator

# Containers by suffix -> FFmpeg's muxer. The output keeps the input's container, so its audio
# can be copied as it is (a container that held the codec holds it again).
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_SUFFIXES = tuple(CONTAINERS)
# Video encoders, first available wins: H.264 plays everywhere; WebM holds only VP8/VP9/AV1.
# crf 18 is visually lossless for x264; VP9's realtime settings keep encoding far below the network.
ENCODERS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "webm": [("libvpx-vp9", {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}), ("libvpx", {"crf": "10", "b": "2M"})],
    "default": [("libx264", {"crf": "18", "preset": "veryfast"}), ("mpeg4", {"qscale": "2"})],
}  # fmt: skip
TEMPORAL_MODES = ("flow", "ema", "off")
DEFAULT_DECAY = 0.9  # "ema": ~10 frames of memory
# "flow": alpha, the weight of the warped previous output where the flow is right, and tau, the
# input error (levels of 255) at which that weight has fallen to 1/e (benchmarks/video_speed.py).
FLOW_ALPHA, FLOW_TAU = 0.8, 20.0
# The CLI's default tile side for video frames: up to 1080p in one network pass. Tiling a frame
# costs the tiles' overlap and the shared-statistics pass: 720p in 1024 px tiles took 3.0 s per
# frame against 1.2 s in one pass (shipped Starry Night model, 2 cores).
VIDEO_TILE = 1920
FRAME_PIXELS = 8_294_400  # 4K UHD (3840 x 2160): larger frames are refused (every frame would be tiled)

# progress(done, total): frames done, frames in the clip (0 when the container does not say).
Progress = Callable[[int, int], None]


class VideoError(Img2ImgError):
    """A video that cannot be read (truncated, not a video, no video stream, unknown codec)."""


def is_video(path: Path | str) -> bool:
    return Path(path).suffix.lower() in CONTAINERS


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction       # average frame rate
    frames: int         # as the container declares it; 0 when it does not (often MKV, WebM)
    duration: float     # seconds (0 when unknown)
    codec: str
    audio: str | None   # the first audio stream's codec, if any


def _av():  # noqa: ANN202 - PyAV loads FFmpeg's libraries: only when a video is touched
    try:
        import av
    except ImportError:  # pragma: no cover - a declared dependency
        raise Img2ImgError("videos need PyAV: pip install av") from None
    return av


def _read_error(path: Path, e: Exception) -> VideoError:
    why = " ".join(str(e).split()) or type(e).__name__
    return VideoError(f"{path}: cannot read this video ({why}); is it complete and a video file?")


def _open(path: Path) -> "av.container.InputContainer":
    av = _av()
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise _read_error(path, e) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file has no video stream (audio only?); nothing to translate")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise VideoError(f"{path}: its video codec is not one this FFmpeg can decode")
    w, h = stream.codec_context.width, stream.codec_context.height
    if w * h > FRAME_PIXELS:
        container.close()
        raise VideoError(f"{path}: frames of {w}x{h} are over the limit of 4K UHD (3840x2160); downscale it first")
    return container


def _info(container: "av.container.InputContainer") -> VideoInfo:
    v = container.streams.video[0]
    fps = v.average_rate or v.guessed_rate or Fraction(25)
    duration = float(v.duration * v.time_base) if v.duration and v.time_base else (container.duration or 0) / 1e6
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps), v.frames, duration, v.codec_context.name, audio)


def probe(path: Path | str) -> VideoInfo:
    """Size, frame rate, frame count, duration and codecs, from the container (nothing decoded)."""
    with _open(Path(path)) as container:
        return _info(container)


def _decode(container: "av.container.InputContainer", path: Path, packets: Iterator["av.Packet"] | None = None) -> Iterator["av.VideoFrame"]:
    """The video frames of `packets` (default: the first video stream's), FFmpeg's errors
    turned into a VideoError naming the file."""
    av = _av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame-threaded decoding
    try:
        for packet in packets if packets is not None else container.demux(stream):
            if packet.stream is stream:
                yield from packet.decode()
    except av.FFmpegError as e:
        raise _read_error(path, e) from None


def read_frames(path: Path | str, max_side: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as HxWx3 uint8 RGB, one at a time (downscaled as fit_size says)."""
    path = Path(path)
    with _open(path) as container:
        info = _info(container)
        size = fit_size(info.width, info.height, max_side)
        for frame in _decode(container, path):
            yield _rgb(frame, size)


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The frame size to translate at: as it is, or scaled so its long side is max_side, with
    even sides (4:2:0 video needs them)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)


def _rgb(frame: "av.VideoFrame", size: tuple[int, int]) -> np.ndarray:
    if (frame.width, frame.height) != size:
        frame = frame.reformat(width=size[0], height=size[1], interpolation="AREA")
    return frame.to_ndarray(format="rgb24")


class StatsSmoother:
    """The exponential moving average of every instance-norm layer's (mean, variance) over the
    frames so far (see the module docstring); the first frame starts it at its own statistics."""

    def __init__(self, decay: float):
        if not 0 <= decay < 1:
            raise Img2ImgError(f"the temporal decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._stats: list[LayerStats] | None = None

    def update(self, stats: list[LayerStats]) -> list[LayerStats]:
        d = self.decay
        if self._stats is None:
            self._stats = stats
        else:
            self._stats = [(d * m0 + (1 - d) * m, d * v0 + (1 - d) * v, eps) for (m0, v0, _), (m, v, eps) in zip(self._stats, stats)]
        return self._stats


class FlowBlender:
    """The "flow" mode's running blend (module docstring): feed (input RGB, output RGB) frame
    pairs in order, get the stabilized output."""

    def __init__(self, alpha: float = FLOW_ALPHA, tau: float = FLOW_TAU):
        self.alpha, self.tau = alpha, tau
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # blended out, input, grey

    def __call__(self, inp: np.ndarray, out: np.ndarray) -> np.ndarray:
        import cv2

        from img2img.flow import FLOW_SIDE, backward_flow, warp

        grey = cv2.cvtColor(inp, cv2.COLOR_RGB2GRAY)
        cur = out.astype(np.float32)
        if self._prev is not None:
            prev_out, prev_in, prev_grey = self._prev
            flow = backward_flow(grey, prev_grey, FLOW_SIDE)
            moved_out, inside = warp(prev_out, flow)
            moved_in, _ = warp(prev_in, flow)
            err = np.abs(inp.astype(np.float32) - moved_in).mean(axis=2)
            w = (self.alpha * inside * np.exp(-((err / self.tau) ** 2)))[:, :, None].astype(np.float32)
            cur += w * (moved_out - cur)
        self._prev = (cur, inp, grey)
        return np.clip(cur + 0.5, 0, 255).astype(np.uint8)


def translated_frames(translator: "Translator", frames: Iterator[np.ndarray], temporal: str = "flow", decay: float = DEFAULT_DECAY) -> Iterator[np.ndarray]:
    """RGB uint8 frames in -> translated RGB uint8 frames out, same size, one for one.
    temporal: "flow", "ema" (statistics smoothed with `decay`; instance-norm nets) or "off"
    (module docstring); outside "ema", frames go in batches of the translator's batch size."""
    if temporal not in TEMPORAL_MODES:
        raise Img2ImgError(f"unknown temporal mode {temporal!r}; choose {' or '.join(TEMPORAL_MODES)}")
    channels = translator.card.input_channels
    smoother = StatsSmoother(decay)

    def model_input(rgb: np.ndarray) -> np.ndarray:
        return rgb if channels == 3 else prepare(Image.fromarray(rgb), channels)

    def as_rgb(out: np.ndarray) -> np.ndarray:
        return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out

    blend = FlowBlender() if temporal == "flow" else None

    def finish(inputs: list[np.ndarray], outs: list[np.ndarray]) -> Iterator[np.ndarray]:
        for rgb, out in zip(inputs, outs):
            yield blend(rgb, as_rgb(out)) if blend is not None else as_rgb(out)

    batch: list[np.ndarray] = []  # input RGB frames waiting for a batch
    for rgb in frames:
        if temporal == "ema" and (stats := translator.norm_stats(x := model_input(rgb))) is not None:
            yield as_rgb(translator.translate_fixed(x, smoother.update(stats)))
            continue
        batch.append(rgb)
        if len(batch) == translator.batch_size:
            yield from finish(batch, translator.translate_arrays([model_input(b) for b in batch]))
            batch = []
    if batch:
        yield from finish(batch, translator.translate_arrays([model_input(b) for b in batch]))


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]
    audio: bool     # the audio track was copied
    codec: str      # the video encoder used
    seconds: float  # wall time of the translation


def encoder_for(container_format: str) -> tuple[str, dict[str, str]]:
    """The first encoder of ENCODERS this FFmpeg build has, for a muxer name."""
    av = _av()
    for name, options in ENCODERS.get(container_format, ENCODERS["default"]):
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        return name, options
    raise Img2ImgError(f"this FFmpeg build has no video encoder for {container_format}; write another container (.mp4)")


def _check_complete(path: Path, info: VideoInfo, decoded: int) -> None:
    """A file cut short often decodes without an error, just fewer frames than its header
    declares: that is an error too (the output would silently be a shorter video)."""
    if decoded == 0:
        raise VideoError(f"{path}: no frame could be decoded; the file is truncated or not a video")
    if info.frames and decoded < info.frames - 1:  # -1: containers round the declared count
        raise VideoError(f"{path}: only {decoded} of the {info.frames} frames it declares could be decoded; the file is truncated")


def translate_video(
    translator: "Translator",
    src: Path | str,
    dst: Path | str,
    *,
    temporal: str = "flow",
    decay: float = DEFAULT_DECAY,
    max_side: int | None = None,
    max_frames: int | None = None,
    audio: bool = True,
    progress: Progress | None = None,
) -> VideoResult:
    """Translate a video into dst (same container as dst's suffix, which must be a video one):
    same frame rate and frame count, same size (or fit_size's with max_side), the audio copied
    (unless audio=False). A clip of more than max_frames frames is refused when its frame
    max_frames + 1 is decoded (containers may not declare their length). dst appears only when
    complete."""
    import time

    av = _av()
    src, dst = Path(src), Path(dst)
    fmt = CONTAINERS.get(dst.suffix.lower())
    if fmt is None:
        raise Img2ImgError(f"{dst}: not a video name; use one of {', '.join(VIDEO_SUFFIXES)}")
    start = time.perf_counter()
    with _open(src) as container:
        info = _info(container)
        size = fit_size(info.width, info.height, max_side)
        codec, options = encoder_for(fmt)
        counts = {"decoded": 0, "audio": 0}

        def write(tmp: Path) -> None:
            with av.open(str(tmp), mode="w", format=fmt) as out:
                vout = out.add_stream(codec, rate=info.fps, options=options)
                vout.width, vout.height = size
                # 4:2:0 needs even sides; x264 encodes odd ones in 4:4:4.
                vout.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"
                ain = container.streams.audio[0] if audio and container.streams.audio else None
                aout = out.add_stream_from_template(ain) if ain is not None else None
                streams = [container.streams.video[0]] + ([ain] if ain is not None else [])

                def packets() -> Iterator["av.Packet"]:
                    """Every packet; audio ones are copied into the output on the way."""
                    for packet in container.demux(*streams):
                        if packet.stream is ain:
                            if packet.dts is not None:  # the demuxer's final flush packet has none
                                packet.stream = aout
                                out.mux(packet)
                                counts["audio"] += 1
                            continue
                        yield packet

                def rgb_frames() -> Iterator[np.ndarray]:
                    for frame in _decode(container, src, packets()):
                        counts["decoded"] += 1
                        if max_frames is not None and counts["decoded"] > max_frames:
                            raise VideoError(f"{src}: longer than the limit of {max_frames} frames; cut it shorter")
                        yield _rgb(frame, size)

                for i, y in enumerate(translated_frames(translator, rgb_frames(), temporal, decay)):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(y), format="rgb24")
                    frame.pts = i  # in the stream's time base, 1 / fps: constant rate, every frame kept
                    out.mux(vout.encode(frame))
                    if progress is not None:
                        progress(i + 1, info.frames)
                out.mux(vout.encode(None))  # flush the encoder's lookahead
            _check_complete(src, info, counts["decoded"])

        try:
            atomic_write(dst, write)
        except av.FFmpegError as e:
            raise Img2ImgError(f"{dst}: cannot write the video ({' '.join(str(e).split())})") from None
    return VideoResult(dst, counts["decoded"], info.fps, size, counts["audio"] > 0, codec, time.perf_counter() - start)


def write_frames(
    translator: "Translator",
    src: Path | str,
    folder: Path | str,
    *,
    temporal: str = "flow",
    decay: float = DEFAULT_DECAY,
    progress: Progress | None = None,
) -> int:
    """Translate a video into numbered PNG frames (folder/000001.png, ...), each written
    atomically; returns the number of frames. The frame-by-frame output of `translate --frames`."""
    src, folder = Path(src), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _open(src) as container:
        info = _info(container)
        size = (info.width, info.height)
        n = 0
        for n, y in enumerate(translated_frames(translator, (_rgb(f, size) for f in _decode(container, src)), temporal, decay), 1):
            atomic_write(folder / f"{n:06d}.png", lambda tmp, y=y: Image.fromarray(y).save(tmp, format="PNG"))
            if progress is not None:
                progress(n, info.frames)
        _check_complete(src, info, n)
    return n


def write_test_clip(frames: Iterator[np.ndarray], path: Path, fps: int = 24, audio_hz: float | None = None) -> Path:
    """Encode RGB frames (and, with audio_hz, a sine tone as long as the clip) into path; the
    tests' and benchmarks' way of building real clips from photos."""
    av = _av()
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    fmt = CONTAINERS[path.suffix.lower()]
    codec, options = encoder_for(fmt)
    with av.open(str(path), mode="w", format=fmt) as out:
        v = out.add_stream(codec, rate=fps, options=options)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = None
        if audio_hz is not None:
            a = out.add_stream("libopus" if fmt == "webm" else "aac", rate=48000)
            a.layout = "mono"
        for count, f in enumerate(itertools.chain([first], frames), 1):  # streamed: any length
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = count - 1
            out.mux(v.encode(vf))
        out.mux(v.encode(None))
        if a is not None:
            n = round(48000 * count / fps)
            tone = (0.3 * np.sin(2 * np.pi * audio_hz * np.arange(n) / 48000)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, 0
            out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


def pan_zoom(photo: np.ndarray, size: tuple[int, int], frames: int, zoom: float = 1.5) -> Iterator[np.ndarray]:
    """A camera move across a real photo: a window of the photo's aspect that zooms in by
    `zoom` while panning from the left edge to the right, resized to size = (w, h). The
    tests' and benchmarks' real footage."""
    img = Image.fromarray(photo)
    w0, h0 = img.size
    for i in range(frames):
        t = i / max(1, frames - 1)
        s = 1 + (zoom - 1) * t
        cw, ch = w0 / s, h0 / s
        x0, y0 = (w0 - cw) * t, (h0 - ch) / 2
        yield np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))
