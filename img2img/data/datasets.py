"""Datasets: paired (pix2pix), unpaired (CycleGAN) and pairs derived from any photo folder.

Every item is keyed by a "sample key" k from the sampler: the image is k mod len(dataset) and
the augmentation is seeded by (seed, k). The sampler puts the epoch into k, so each epoch sees
new crops, and a resumed run sees exactly the crops the uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from img2img import Img2ImgError
from img2img.config import DataConfig
from img2img.data.balance import balance_colour
from img2img.data.derived import (PEN_LEVELS, SketchCache, Sketcher, colour_hints, file_digest, hint_count, luminance,
                                  make_sketcher, pen_lines)
from img2img.data.images import ImageReadError, list_images, load_image
from img2img.io import split_ab
from img2img.data.transforms import build_transform, compose, geometric_steps, jitter_steps, resize_steps, to_tensor

if TYPE_CHECKING:
    import albumentations as A

# Derived sketches are cached under <data root>/CACHE_DIRNAME unless data.cache_dir says otherwise.
CACHE_DIRNAME = ".img2img-cache"


def _readable(paths: list[Path], cfg: DataConfig, log: logging.Logger) -> list[Path]:
    """Drop files whose header cannot be read (reported once, with a summary); fail on the
    first one with data.strict. Also checks that every image can hold the crop."""
    good, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as img:
                size = img.size
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
            err = ImageReadError(f"{p}: cannot read image ({'not an image' if 'identify' in str(e) else e})", p)
            if cfg.strict:
                raise err from None
            bad.append(str(err))
            continue
        if cfg.preprocess == "crop" and min(size) < cfg.crop_size:
            raise Img2ImgError(
                f"{p} is {size[0]}x{size[1]}, smaller than data.crop_size={cfg.crop_size}; "
                f"use data.preprocess=resize_and_crop or a smaller crop"
            )
        good.append(p)
    if bad:
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        log.warning("skipping %d unreadable image(s) (data.strict=true fails instead): %s%s", len(bad), "; ".join(bad[:5]), more)
    return good


def _nonempty(paths: list[Path], folder: Path, what: str) -> list[Path]:
    if not paths:
        raise Img2ImgError(f"no readable images in {folder} ({what}); add .jpg/.png files or check --data")
    return paths


class _Augmented(Dataset):
    """Shared machinery: per-sample seeded augmentation and skipping of bad files at load time."""

    def __init__(self, cfg: DataConfig, seed: int, log: logging.Logger, transform: A.Compose | None):
        self.cfg, self.seed, self.log = cfg, seed, log
        self.transform = transform
        # Paths already reported as unreadable. Each DataLoader worker holds its own copy, so a
        # bad file is reported at most once per worker, not once per epoch.
        self.reported: set[str] = set()
        # Per-image sampling weights for ResumableSampler (None: uniform).
        self.sample_weights: np.ndarray | None = None

    def _rng(self, key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, key])

    def _augment(self, rng: np.random.Generator, **images: np.ndarray) -> dict[str, np.ndarray]:
        self.transform.set_random_seed(int(rng.integers(2**31)))
        return self.transform(**images)

    def _draft(self, width_factor: int = 1) -> tuple[int, int] | None:
        """Size a JPEG may be decoded at (DCT scaling, 1/2..1/8) before the resize to load_size."""
        if self.cfg.preprocess != "resize_and_crop":
            return None
        return (self.cfg.load_size * width_factor, self.cfg.load_size)

    def _load(self, path: Path, width_factor: int = 1) -> np.ndarray:
        return np.asarray(load_image(path, draft=self._draft(width_factor)))

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        # A file that passed the header scan can still be truncated: report it and use another.
        for attempt in range(10):
            try:
                return self._item(key + attempt * 7919)
            except ImageReadError as e:
                if self.cfg.strict:
                    raise
                path = e.path or str(e)
                if path not in self.reported:
                    self.reported.add(path)
                    self.log.warning("skipping unreadable image (%d so far in this process; reported once each): %s",
                                     len(self.reported), e)
        raise Img2ImgError("too many unreadable images in a row; check the dataset folder")

    def _item(self, key: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class PairedDataset(_Augmented):
    """Aligned (A, B) pairs. `pairs` holds (ab_file, None) for side-by-side images (A left,
    B right, the pix2pix layout) or (a_file, b_file). direction=BtoA swaps the roles."""

    def __init__(self, pairs: list[tuple[Path, Path | None]], cfg: DataConfig, seed: int, log: logging.Logger):
        super().__init__(cfg, seed, log, build_transform(cfg, paired=True))
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def _item(self, key: int) -> dict[str, torch.Tensor]:
        first, second = self.pairs[key % len(self.pairs)]
        if second is None:
            a, b = split_ab(self._load(first, width_factor=2))
        else:
            a, b = self._load(first), self._load(second)
            if a.shape != b.shape:
                raise Img2ImgError(f"{first} is {a.shape[1]}x{a.shape[0]} but {second} is {b.shape[1]}x{b.shape[0]}; paired images must match in size")
        if self.cfg.direction == "BtoA":
            a, b = b, a
        out = self._augment(self._rng(key), image=a, target=b)
        return {"A": to_tensor(out["image"]), "B": to_tensor(out["target"])}


class DerivedPairDataset(_Augmented):
    """Pairs made from photos alone: B = the photo, A = its luminance (colorization) or a line
    drawing (sketch). Per sample:

      photo -> resize to load_size (deterministic)
        colorization: -> crop + flip -> colour jitter -> A = luma of the jittered crop
                         (A stays exactly the grey version of B)
        sketch:       -> A = sketch of the resized photo (cached on disk by file content,
                         extractor and size) -> the same crop + flip on A and B
                         -> colour jitter on B only (lines barely depend on colour, and
                         jittering first would defeat the cache)
        sketch with preprocess=scale_crop and a per-crop extractor (XDoG, Canny): crop
                         (resized) + flip -> A = sketch of the crop (not cached) -> colour
                         jitter on B. The crop is rescaled, so hard 1-px lines drawn before it
                         would be thinned or thickened; drawn after, they are as thin as the
                         extractor draws them on any image at inference. (HED: as above, cached.)
        sketch, data.pen_drawings: that share of the drawings redrawn as pen strokes (pen_lines)
                         after the crop.
        sketch, data.colour_hints: the drawing in RGB with marks of B's colours (colour_hints).
    """

    def __init__(self, photos: list[Path], cfg: DataConfig, seed: int, log: logging.Logger,
                 sketcher: Sketcher | None = None, cache_root: Path | None = None):
        super().__init__(cfg, seed, log, transform=None)  # staged pipelines below instead
        self.photos = photos
        self.resize = compose(resize_steps(cfg))
        self.jitter = compose(jitter_steps(cfg))
        self.crop_one = compose(geometric_steps(cfg))
        self.crop_pair = compose(geometric_steps(cfg), paired=True)
        size = cfg.load_size if cfg.preprocess == "resize_and_crop" else None
        self.draw_after_crop = cfg.preprocess == "scale_crop" and sketcher is not None and sketcher.per_crop
        cached = sketcher is not None and cache_root is not None and not self.draw_after_crop
        self.cache = SketchCache(cache_root, sketcher, size, log) if cached else None
        self.sketcher = sketcher
        if cfg.balance_colour:
            self.sample_weights, summary = balance_colour(photos)
            log.info("%s", summary)

    def __len__(self) -> int:
        return len(self.photos)

    def _run(self, t: A.Compose | None, rng: np.random.Generator, **images: np.ndarray) -> dict[str, np.ndarray]:
        seed = int(rng.integers(2**31))  # drawn even when t is None: the stream stays the same
        if t is None:
            return images
        t.set_random_seed(seed)
        return t(**images)

    def _item(self, key: int) -> dict[str, torch.Tensor]:
        rng = self._rng(key)
        path = self.photos[key % len(self.photos)]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageReadError(f"{path}: cannot read file ({e})", path) from None
        b = self._run(self.resize, rng, image=np.asarray(load_image(path, draft=self._draft(), data=data)))["image"]
        if self.sketcher is None:  # colorization
            b = self._run(self.crop_one, rng, image=b)["image"]
            b = self._run(self.jitter, rng, image=b)["image"]
            a = luminance(b)
        elif self.draw_after_crop:
            b = self._run(self.crop_one, rng, image=b)["image"]
            a = self.sketcher(b)
            b = self._run(self.jitter, rng, image=b)["image"]
        else:
            a = self.cache.get(file_digest(data), b) if self.cache is not None else self.sketcher(b)
            out = self._run(self.crop_pair, rng, image=a, target=b)
            a, b = out["image"], self._run(self.jitter, rng, image=out["target"])["image"]
        if self.cfg.pen_drawings:  # drawn only when set: older runs keep their random stream
            pen, level = rng.random() < self.cfg.pen_drawings, rng.uniform(*PEN_LEVELS)
            a = pen_lines(a, level) if pen else a
        if self.cfg.colour_hints:  # marks of the target's own colours, after its jitter: they agree
            a = colour_hints(a, b, hint_count(rng), rng)
        return {"A": to_tensor(a), "B": to_tensor(b)}


class UnpairedDataset(_Augmented):
    """Domain A and domain B images with independent augmentation. Length max(|A|, |B|);
    A cycles in order, B is drawn at random (seeded by the sample key), as in CycleGAN."""

    def __init__(self, a_files: list[Path], b_files: list[Path], cfg: DataConfig, seed: int, log: logging.Logger):
        super().__init__(cfg, seed, log, build_transform(cfg, paired=False))
        if cfg.direction == "BtoA":
            a_files, b_files = b_files, a_files
        self.a_files, self.b_files = a_files, b_files

    def __len__(self) -> int:
        return max(len(self.a_files), len(self.b_files))

    def _item(self, key: int) -> dict[str, torch.Tensor]:
        rng = self._rng(key)
        a = self._load(self.a_files[key % len(self.a_files)])
        b = self._load(self.b_files[int(rng.integers(len(self.b_files)))])
        return {"A": to_tensor(self._augment(rng, image=a)["image"]), "B": to_tensor(self._augment(rng, image=b)["image"])}


def paired_sources(root: Path, split: str) -> tuple[Path, list[tuple[Path, Path | None]]]:
    """(folder, [(A file, B file)]) from root/split/A + root/split/B (matched by name), or
    (folder, [(AB file, None)]) for side-by-side images in root/split/AB or root/split."""
    base = root / split
    if (base / "A").is_dir() and (base / "B").is_dir():
        a = {p.relative_to(base / "A").with_suffix(""): p for p in list_images(base / "A")}
        b = {p.relative_to(base / "B").with_suffix(""): p for p in list_images(base / "B")}
        if a.keys() != b.keys():
            only_a = sorted(str(k) for k in a.keys() - b.keys())[:5]
            only_b = sorted(str(k) for k in b.keys() - a.keys())[:5]
            raise Img2ImgError(
                f"{base}/A and {base}/B must hold the same file names; only in A: {only_a or '-'}, only in B: {only_b or '-'}"
            )
        return base, [(a[k], b[k]) for k in sorted(a)]
    ab = base / "AB" if (base / "AB").is_dir() else base
    if not ab.is_dir():
        raise Img2ImgError(
            f"no paired data at {base}; expected {base}/AB/*.jpg (A|B side by side) or {base}/A + {base}/B with matching names"
        )
    return ab, [(p, None) for p in list_images(ab)]


def build_dataset(cfg: DataConfig, root: Path, seed: int, log: logging.Logger, split: str = "train") -> Dataset:
    """The dataset that data.kind asks for, from the folder layout under root."""
    root = Path(root)
    if not root.is_dir():
        raise Img2ImgError(f"data folder {root} does not exist; pass --data DIR or --dataset NAME")
    if cfg.kind == "paired":
        folder, pairs = paired_sources(root, split)
        good = set(_readable([p for pair in pairs for p in pair if p is not None], cfg, log))
        pairs = [pr for pr in pairs if all(p is None or p in good for p in pr)]
        _nonempty(pairs, folder, "paired images")
        return PairedDataset(pairs, cfg, seed, log)
    if cfg.kind == "unpaired":
        sets = []
        for side in "AB":
            folder = root / f"{split}{side}"
            if not folder.is_dir():
                raise Img2ImgError(f"unpaired data needs {root}/{split}A and {root}/{split}B; {folder} is missing")
            sets.append(_nonempty(_readable(list_images(folder), cfg, log), folder, f"domain {side}"))
        return UnpairedDataset(sets[0], sets[1], cfg, seed, log)
    # colorization / sketch: any photo folder; prefer root/<split> when it exists.
    folder = root / split if (root / split).is_dir() else root
    photos = _nonempty(_readable(list_images(folder), cfg, log), folder, "photos")
    if cfg.kind == "colorization":
        return DerivedPairDataset(photos, cfg, seed, log)
    cache_root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else root / CACHE_DIRNAME
    return DerivedPairDataset(photos, cfg, seed, log, sketcher=make_sketcher(cfg.sketch), cache_root=cache_root)


class ResumableSampler(Sampler[int]):
    """Endless stream of sample keys k = epoch * len(dataset) + index, shuffled per epoch.

    Under DDP it shards each epoch with torch's DistributedSampler (seed + epoch), so ranks see
    disjoint images. Each epoch yields whole batches only, so batches never straddle epochs and
    a resumed run can skip exactly `start_step` batches.

    With weights (one per image), each epoch instead draws its images with replacement in
    proportion to them (seeded by seed + epoch) and deals the draws out to the ranks. A photo
    drawn twice must still get two different crops, so the key also carries the draw's place:
    k = (epoch * draws + place) * len(dataset) + index (the dataset reads k mod its length).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, weights: np.ndarray | None = None):
        self.n = len(dataset)
        self.batch_size = batch_size
        self.start_step = start_step
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.inner) // batch_size
        if self.steps_per_epoch == 0:
            raise Img2ImgError(
                f"{self.n} images cannot fill one batch of {batch_size} per process x {world_size} process(es); "
                "lower data.batch_size or add images"
            )

    def _epoch_keys(self, epoch: int) -> list[int]:
        if self.weights is None:
            self.inner.set_epoch(epoch)
            return [epoch * self.n + i for i in self.inner]
        draws = len(self.inner) * self.world_size
        g = torch.Generator().manual_seed(self.seed + epoch)
        picks = torch.multinomial(self.weights, draws, replacement=True, generator=g).tolist()
        return [(epoch * draws + place) * self.n + picks[place] for place in range(self.rank, draws, self.world_size)]

    def __iter__(self) -> Iterator[int]:
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            keys = self._epoch_keys(epoch)[: self.steps_per_epoch * self.batch_size]
            yield from keys[skip * self.batch_size :]
            epoch, skip = epoch + 1, 0
