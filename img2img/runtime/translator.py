"""The Translator: any image through an exported .onnx (ONNX Runtime) or a run directory /
G_*.safetensors (PyTorch), configured from the model card that travels with the model, so a
model is used without flags. Output size always equals input size."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from img2img import Img2ImgError
from img2img.card import ModelCard
from img2img.data.images import MAX_PIXELS
from img2img.io import from_unit, to_unit
from img2img.runtime import choice
from img2img.runtime.backends import Backend, OrtBackend, TorchBackend
from img2img.runtime.onnx_graphs import LayerStats
from img2img.runtime.pixels import colour_under, mirror_mean, prepare, resize_to, shrink, to_pil
from img2img.runtime.tiling import TileGrid, blend_weights, ceil_to, padded_window, reflect_pad, tile_grid

DEFAULT_TILE = 1024  # sides above this are translated in overlapping tiles (bounded memory)
# The short side of the copy the network runs on, by task; the output is enlarged back. The
# shipped colorization and sketch models learned on 128 px crops of 10-100 % of a photo's area,
# i.e. on photos seen at a short side of 128-405 px: at a 512 px photo's full size they meet
# objects 2-4x larger than they ever saw.
# - colorization (with keep_luminance): the copy's chroma, low-frequency, goes under the
#   full-size luma (restore_luminance); at full size colours come out speckled and off-hue.
#   Zhang et al. 2016 colour at 256 px the same way. docs/evaluation.md, "Colouring at the
#   training scale".
# - sketch2photo: the copy is enlarged (bicubic); at full size the textures are finer than any
#   it learned, and with colour marks PSNR is lower on 14 of 18 photos (0.3-0.4 dB in the mean).
#   docs/evaluation.md, "The marks set the colours; drawing at the training scale".
WORK_SIZE = {"colorization": 256, "sketch2photo": 256}
BACKENDS = ("onnx", "torch")
FLUSH_ROWS = 128  # rows of finished tiles converted to uint8 at a time

# progress(done, total): called after every network pass; raising in it stops the translation.
Progress = Callable[[int, int], None]


def check_pixels(width: int, height: int) -> None:
    """The pixel limit of img2img.data.images (MAX_PIXELS), for images that reach the runtime
    without load_image (arrays, PIL images from elsewhere)."""
    if width * height > MAX_PIXELS:
        raise Img2ImgError(
            f"{width}x{height} is {width * height / 1e6:.2f} megapixels, over the limit of "
            f"{MAX_PIXELS / 1e6:g} megapixels; downscale it first"
        )


class Translator:
    """Translate PIL images with an exported .onnx (ONNX Runtime) or a run directory /
    G_*.safetensors (PyTorch). Sides that are not a multiple of the network's stride are
    reflect-padded and cropped back, never resized. Images with a side above `tile` are
    translated in overlapping, stride-aligned tiles blended with raised-cosine weights, which
    bounds memory; instance-norm layers in all tiles share statistics measured on the whole
    (downscaled) image, so tiles agree with each other."""

    def __init__(
        self,
        model: Path | str,
        *,
        direction: str | None = None,     # run directories: AtoB (default) or BtoA
        backend: str = "auto",            # auto (by file type; .onnx: the faster path, runtime/choice.py) | onnx | torch
        device: str = "auto",             # auto | cpu | cuda
        threads: int | None = None,       # CPU threads (None: ONNX Runtime one per core; torch's default)
        batch_size: int = 1,              # images (or tiles) per forward pass
        tile: int | None = DEFAULT_TILE,  # tile side for large images; 0/None: never tile
        tile_overlap: int | None = None,  # pixels shared by neighbouring tiles (default tile // 4)
        shared_stats: bool = True,        # tiles share instance-norm statistics (see _translate_tiled)
        keep_luminance: bool = True,      # colorization: output luma := input grey (see restore_luminance)
        work_size: int | None = None,     # colorization (with keep_luminance), sketch2photo: run at this short side (None: WORK_SIZE; 0: full size)
        flip_average: bool | None = None,  # average with the mirror image's output (None: on for colorization with keep_luminance)
        reuse_memory: bool = False,       # ONNX Runtime: keep activation memory between calls (OrtBackend)
        precision: str = "auto",          # PyTorch on a CPU: auto (bf16 where native) | fp32 | bf16 (TorchBackend)
    ):
        model = Path(model)
        if batch_size < 1:
            raise Img2ImgError(f"batch size must be at least 1, got {batch_size}")
        is_onnx = model.suffix == ".onnx"
        choose = backend == "auto" and is_onnx
        if backend == "auto":
            backend = "onnx" if is_onnx else "torch"
        if backend not in BACKENDS:
            raise Img2ImgError(f"unknown backend {backend!r}; choose onnx or torch")
        if backend == "onnx" and not is_onnx:
            raise Img2ImgError(
                f"the onnx backend needs an .onnx file; export {model} first (`img2img export {model} -o model.onnx`) "
                f"or use --backend torch"
            )
        if backend == "torch" and is_onnx:
            raise Img2ImgError(f"{model} is an ONNX model; the torch backend needs a run directory or G_*.safetensors")
        self._backend: Backend
        self.backend_choice = ""  # backend auto for an .onnx: how the backend was chosen, when there was a choice
        if is_onnx:
            if not model.is_file():
                raise Img2ImgError(f"{model} does not exist")
            ort_backend = OrtBackend(model, device, threads, reuse_memory)
            self.card = ModelCard.from_metadata(ort_backend.metadata, str(model))
            if direction is not None and direction != self.card.direction:
                raise Img2ImgError(f"{model} is the {self.card.direction} generator, but direction {direction} was asked for")
            self._backend = ort_backend
            if choose:
                backend = self._choose_backend(model, ort_backend, threads, precision)
        else:
            from img2img.checkpoint import generator_card, generator_path  # torch: only for this backend

            path = generator_path(model, direction)
            self.card = generator_card(path)
            self._backend = TorchBackend(path, device, threads, precision)
        self.backend = backend
        self.batch_size = batch_size
        m = self.card.size_multiple
        if tile:
            # Tiles must themselves be valid inputs: a multiple of the stride, at least min_size.
            tile = max(ceil_to(self.card.min_size, m), tile // m * m)
            overlap = tile // 4 if tile_overlap is None else tile_overlap
            if not 0 < overlap <= tile // 2:
                raise Img2ImgError(f"tile overlap must be in 1..{tile // 2} for {tile} px tiles, got {overlap}")
            self.tile_overlap = overlap
        else:
            self.tile_overlap = 0
        self.tile: int | None = tile or None
        self.shared_stats = shared_stats
        self.keep_luminance = keep_luminance and self.card.task == "colorization" and self.card.input_channels == 1
        if work_size is not None and work_size < 0:
            raise Img2ImgError(f"work size must be 0 (full size) or a number of pixels, got {work_size}")
        # WORK_SIZE names the tasks that run scaled; colorization only where the luma is restored.
        scaled = self.keep_luminance if self.card.task == "colorization" else self.card.task in WORK_SIZE
        self.work_size = ((WORK_SIZE[self.card.task] if work_size is None else work_size) or None) if scaled else None
        # Test-time flip average: a photo and its mirror image are equally likely (training flips
        # at random), so the mean of the two outputs is a two-sample estimate of the colours; their
        # independent errors (speckle, a hue that differs between halves) shrink. Measured in
        # docs/evaluation.md ("The flip average"): PSNR, FID and KID better for colorization; off
        # elsewhere (sketches: KID worse; style: one-way brush strokes turn into a crosshatch).
        self.flip_average = self.keep_luminance if flip_average is None else flip_average

    def _choose_backend(self, model: Path, ort_backend: OrtBackend, threads: int | None, precision: str) -> str:
        """backend auto for an .onnx: PyTorch bf16 where runtime/choice.py measures it faster
        within the quality bar (cached per machine); the verdict goes into describe()."""
        weights = choice.torch_candidate(model, self.card, ort_backend.device, precision)
        if weights is None:
            return "onnx"
        key = choice.cache_key(model, weights, threads)
        verdict = choice.cached_verdict(key)
        cached = verdict is not None
        torch_backend = TorchBackend(weights, "cpu", threads, precision) if not cached or verdict.backend == "torch" else None
        if verdict is None:
            verdict = choice.measure(ort_backend.run, torch_backend.run, choice.probe_image(self.card.input_channels))
            choice.save_verdict(key, verdict)
        self.backend_choice = verdict.describe(cached)
        if verdict.backend == "torch":
            self._backend = torch_backend
        return verdict.backend

    @property
    def device(self) -> str:
        """cpu | cuda: where the network runs."""
        return self._backend.device

    @property
    def providers(self) -> tuple[str, ...]:
        """ONNX Runtime's execution providers in use, in priority order; () for PyTorch."""
        return self._backend.providers

    def __repr__(self) -> str:
        c = self.card
        on = f"{self.device}: {', '.join(self.providers)}" if self.providers else self.device
        return f"Translator({c.method} {c.direction} {c.task}, backend={self.backend} on {on}, tile={self.tile})"

    def describe(self) -> str:
        """One line for start-up messages: runtime, device, threads and tiling, e.g. "ONNX
        Runtime 1.31.1 on CPU (CPUExecutionProvider), 2 threads, tiles of 1024 px"."""
        tiles = f"tiles of {self.tile} px" if self.tile else "no tiling"
        batches = f", batches of {self.batch_size}" if self.batch_size > 1 else ""
        chosen = f" ({self.backend_choice})" if self.backend_choice else ""
        scale = f", network at {self.work_size} px" if self.work_size else ""
        flip = ", flip-averaged" if self.flip_average else ""
        return f"{self._backend.describe()}{chosen}, {tiles}{batches}{scale}{flip}"

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """The raw network on NCHW float32 in [-1, 1]; H, W valid for the network."""
        return self._backend.run(batch)

    def translate(self, images: Sequence[Image.Image], progress: Progress | None = None) -> list[Image.Image]:
        """Translate images of any size and mode; returns one image per input, same size.
        progress: as in translate_arrays."""
        for img in images:
            check_pixels(*img.size)
        arrays = [prepare(img, self.card.input_channels) for img in images]
        return [to_pil(a) for a in self.translate_arrays(arrays, progress)]

    def translate_arrays(self, arrays: Sequence[np.ndarray], progress: Progress | None = None) -> list[np.ndarray]:
        """HxWxC uint8 (C = the model's input channels) -> HxWxC' uint8, same H and W.
        Images padded to the same size share a forward pass, batch_size at a time.

        progress(done, total) is called after every network pass: one per batch of whole
        images, one per batch of tiles and one for each tiled image's shared statistics;
        total counts them all for this call. An exception raised by progress (a cancelled
        request) stops the work at once and propagates; nothing of the call is kept."""
        c = self.card
        for a in arrays:
            check_pixels(a.shape[1], a.shape[0])
        full, arrays = arrays, [self._network_input(a) for a in arrays]
        if self.flip_average:  # the mirror images ride along in the same batches
            arrays += [np.ascontiguousarray(a[:, ::-1]) for a in arrays]
        out: list[np.ndarray | None] = [None] * len(arrays)
        grids: dict[int, TileGrid] = {}  # tiled images
        groups: dict[tuple[int, int], list[int]] = {}  # padded size -> image indices
        for i, a in enumerate(arrays):
            h, w = a.shape[:2]
            if self.tile is not None and max(h, w) > self.tile:
                grids[i] = tile_grid(h, w, self.tile, self.tile_overlap, c.size_multiple, c.min_size)
            else:
                padded_size = tuple(ceil_to(max(n, c.min_size), c.size_multiple) for n in (h, w))
                groups.setdefault(padded_size, []).append(i)  # type: ignore[arg-type]
        batches = [ix[k : k + self.batch_size] for ix in groups.values() for k in range(0, len(ix), self.batch_size)]
        total = len(batches) + sum(self._tiled_passes(g) for g in grids.values())
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        for i, grid in grids.items():
            out[i] = self._translate_tiled(arrays[i], grid, tick)
        for chunk in batches:
            padded = [reflect_pad(arrays[i], c.size_multiple, c.min_size) for i in chunk]
            y = self.run_batch(np.stack([to_unit(x) for x, _ in padded]))
            for i, yi, (_, (top, left)) in zip(chunk, y, padded):
                h, w = arrays[i].shape[:2]
                out[i] = from_unit(yi[:, top : top + h, left : left + w])
            tick()
        if self.flip_average:
            out = [mirror_mean(o, m) for o, m in zip(out[: len(full)], out[len(full) :])]  # type: ignore[arg-type]
        return [self._finish(a, o) for a, o in zip(full, out)]  # type: ignore[arg-type]

    def _network_input(self, u8: np.ndarray) -> np.ndarray:
        """What the network runs on: the image, or its copy at work_size."""
        return shrink(u8, self.work_size) if self.work_size else u8

    def _finish(self, u8: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The network's output for the input u8 -> the result, u8's size: colorization's
        colours enlarged under u8's own luma; other outputs enlarged as they are."""
        if self.keep_luminance:
            return colour_under(u8[:, :, 0], out)
        return resize_to(out, *u8.shape[:2])

    def norm_stats(self, u8: np.ndarray) -> list[LayerStats] | None:
        """The instance-norm statistics of one HxWxC uint8 image, measured as tiling measures
        them (the whole image, downscaled to fit one tile when larger): what translate_fixed
        takes. None when the network has no instance norm (batch norm: nothing to share). The
        recording graph is kept between calls (a video asks once per frame)."""
        if not self._backend.norm_layers():
            return None
        return self._backend.record_stats(self._stats_input(self._network_input(u8))[None], keep=True)

    def translate_fixed(self, u8: np.ndarray, stats: list[LayerStats]) -> np.ndarray:
        """One HxWxC uint8 image with every instance-norm layer normalizing by `stats` (from
        norm_stats, or a running average of them) instead of by the image's own statistics;
        tiled as translate_arrays tiles. Same H and W out. Never flip-averaged: the statistics
        are the image's, and its mirror image's deeper layers have other statistics."""
        c = self.card
        check_pixels(u8.shape[1], u8.shape[0])
        full, u8 = u8, self._network_input(u8)
        h, w = u8.shape[:2]
        if self.tile is not None and max(h, w) > self.tile:
            out = self._translate_tiled(u8, tile_grid(h, w, self.tile, self.tile_overlap, c.size_multiple, c.min_size), lambda: None, stats)
        else:
            x, (top, left) = reflect_pad(u8, c.size_multiple, c.min_size)
            out = from_unit(self._backend.run_fixed(to_unit(x)[None], stats)[0, :, top : top + h, left : left + w])
        return self._finish(full, out)

    def _shares_stats(self) -> bool:
        return self.shared_stats and self._backend.norm_layers() > 0

    def _tiled_passes(self, grid: TileGrid) -> int:
        """Network passes for one tiled image: the batches of tiles, and the statistics pass."""
        return -(-len(grid.tiles) // self.batch_size) + self._shares_stats()

    def _translate_tiled(
        self, u8: np.ndarray, grid: TileGrid, tick: Callable[[], None], stats: list[LayerStats] | None = None
    ) -> np.ndarray:
        """Overlapping tiles, each translated alone, blended with normalized raised-cosine weights.

        Tiles start at multiples of the network's stride, so every tile sees the same pixel grid
        as a whole-image pass (the network is shift-equivariant only by that stride). Instance
        norm would normalize each tile by its own statistics, shifting its brightness and
        contrast; with shared_stats every tile is instead normalized by one set of per-layer
        statistics, measured in a pass over the whole image downscaled to fit one tile.

        Memory, besides one batch of tiles through the network: the uint8 input and output and
        a float32 accumulator one tile high and the padded width (rows above the current tile
        row are final and written out as uint8). No full-size float copy and no padded copy of
        the image is made: tiles are cut from the reflect-padded image as windows
        (padded_window). tick() is called after every network pass. `stats`, when given, are
        used instead of measuring them (translate_fixed)."""
        g, h, w = grid, u8.shape[0], u8.shape[1]
        wy = blend_weights(g.height, g.tile_h, g.ys, self.tile_overlap)
        wx = blend_weights(g.width, g.tile_w, g.xs, self.tile_overlap)

        run: Callable[[np.ndarray], np.ndarray] = self.run_batch
        if stats is None and self._shares_stats():
            stats = self._backend.record_stats(self._stats_input(u8)[None])
            tick()
        if stats is not None:
            run = lambda batch: self._backend.run_fixed(batch, stats)  # noqa: E731

        out = np.empty((h, w, self.card.output_channels), dtype=np.uint8)
        acc = np.zeros((self.card.output_channels, g.tile_h, g.width), dtype=np.float32)
        lo = 0  # acc holds padded rows lo .. lo + tile_h

        def flush(upto: int) -> None:
            """Rows lo .. upto are final (no later tile reaches them): crop them into out and
            move the rest of acc up, so that it starts at row upto."""
            nonlocal lo
            n = upto - lo
            # Converted FLUSH_ROWS at a time: from_unit's float temporaries stay that small.
            for a in range(max(lo, g.top), min(upto, g.top + h), FLUSH_ROWS):
                b = min(a + FLUSH_ROWS, upto, g.top + h)
                out[a - g.top : b - g.top] = from_unit(acc[:, a - lo : b - lo, g.left : g.left + w])
            acc[:, : g.tile_h - n] = acc[:, n:]
            acc[:, g.tile_h - n :] = 0
            lo = upto

        tiles = g.tiles
        for k in range(0, len(tiles), self.batch_size):
            chunk = tiles[k : k + self.batch_size]
            windows = [padded_window(u8, g.top, g.left, g.ys[i], g.xs[j], g.tile_h, g.tile_w) for i, j in chunk]
            y = run(np.stack([to_unit(x) for x in windows]))
            for (i, j), yi in zip(chunk, y):
                if g.ys[i] > lo:  # the first tile of a new row: the rows above it are final
                    flush(g.ys[i])
                acc[:, :, g.xs[j] : g.xs[j] + g.tile_w] += yi * wy[i][:, None] * wx[j][None, :]
            tick()
        flush(g.height)
        return out

    def _stats_input(self, u8: np.ndarray) -> np.ndarray:
        """The whole image, box-downscaled so its long side fits one tile, reflect-padded to a
        valid size: CxHxW float in [-1, 1]. (The downscale goes through a PIL copy of the
        image; it lives before the tiles run, below the peak they set.)"""
        h, w = u8.shape[:2]
        scale = min(1.0, self.tile / max(h, w)) if self.tile else 1.0
        small = u8
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(to_pil(u8).resize(size, Image.Resampling.BOX), dtype=np.uint8)
            small = small[:, :, None] if small.ndim == 2 else small
        return to_unit(reflect_pad(small, self.card.size_multiple, self.card.min_size)[0])
