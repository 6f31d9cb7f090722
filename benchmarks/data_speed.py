"""Data pipeline throughput vs. a CPU training step: is the loader the bottleneck?

Prints a Markdown table: images/s of each dataset kind (decode + resize to 286 + random 256 crop
+ flip, as training runs it) called directly in one process, and through a torch DataLoader
with 0 and 2 workers, next to the images/s of one CPU training step of the default pix2pix and
CycleGAN nets at 256 px, batch 1.

Photos: the colour photos bundled with scikit-image, written as JPEGs with a 512 px long side,
each in several crops so every file differs (the sketch cache is keyed by content), 64 files.

    python benchmarks/data_speed.py                 # everything (HED rows need its weights)
    python benchmarks/data_speed.py --steps 3 --images 64 --no-hed
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from img2img.config import load_config  # noqa: E402
from img2img.data.datasets import build_dataset  # noqa: E402
from img2img.methods import METHODS  # noqa: E402
from img2img.methods.common import choose_amp  # noqa: E402


def source_photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0]]


def variants(img: np.ndarray, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """n different crops (80-100% of each side) of one photo, long side resized to 512."""
    out = []
    h, w = img.shape[:2]
    for _ in range(n):
        ch, cw = int(h * rng.uniform(0.8, 1.0)), int(w * rng.uniform(0.8, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(img[y : y + ch, x : x + cw])
        scale = 512 / max(ch, cw)
        out.append(crop.resize((round(cw * scale), round(ch * scale)), Image.LANCZOS))
    return out


def make_folders(root: Path, count: int) -> None:
    """root/photos (colorization, sketch), root/paired/train/AB (grey|photo side by side, 512x512
    halves), root/unpaired/trainA + trainB (the photos, B mirrored)."""
    rng = np.random.default_rng(0)
    photos = source_photos()
    images = [v for i, p in enumerate(photos) for v in variants(p, -(-count // len(photos)), rng)][:count]
    for sub in ("photos", "paired/train/AB", "unpaired/trainA", "unpaired/trainB"):
        (root / sub).mkdir(parents=True)
    for i, img in enumerate(images):
        img.save(root / "photos" / f"{i:03d}.jpg", quality=90)
        img.save(root / "unpaired/trainA" / f"{i:03d}.jpg", quality=90)
        img.transpose(Image.FLIP_LEFT_RIGHT).save(root / "unpaired/trainB" / f"{i:03d}.jpg", quality=90)
        sq = img.resize((512, 512), Image.BICUBIC)
        ab = Image.new("RGB", (1024, 512))
        ab.paste(sq.convert("L").convert("RGB"), (0, 0))
        ab.paste(sq, (512, 0))
        ab.save(root / "paired/train/AB" / f"{i:03d}.jpg", quality=90)


def direct_speed(ds, keys: range) -> float:
    """Samples/s of ds[k] called in this process: the pipeline's own cost, no DataLoader."""
    t = time.perf_counter()
    for k in keys:
        ds[k]
    return len(keys) / (time.perf_counter() - t)


def loader_speed(ds, workers: int, n: int, warmup: int = 8) -> float:
    """Samples/s through a DataLoader (batch 1) over n samples (keys past len(ds) are later
    epochs), after `warmup` batches: worker start-up is excluded, and n >> the 4 x workers
    batches prefetched during the warm-up."""
    loader = DataLoader(ds, batch_size=1, sampler=list(range(n + warmup)), num_workers=workers,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t)


def train_speed(preset: str, steps: int) -> float:
    """Images/s of full training steps (D and G updates) of a preset's default nets, CPU, batch 1, 256 px."""
    cfg = load_config(preset)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    method = METHODS[cfg.method](cfg, cpu, choose_amp("off", cpu), 1000, 500)
    a_nc = cfg.model.input_nc
    batch = {"A": torch.rand(1, a_nc, 256, 256) * 2 - 1, "B": torch.rand(1, cfg.model.output_nc, 256, 256) * 2 - 1}
    method.train_step(batch, 0.0)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        method.train_step(batch, 0.0)
    return steps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="photos to write (and samples timed per row)")
    parser.add_argument("--steps", type=int, default=2, help="training steps timed per method (after one warm-up step)")
    parser.add_argument("--no-hed", action="store_true", help="skip the HED sketch rows")
    args = parser.parse_args()
    log = logging.getLogger("bench")
    rows: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folders(root, args.images)
        n = 2 * args.images
        cases = [
            ("paired (train/AB, 1024x512 jpg)", "pix2pix", [], root / "paired"),
            ("unpaired (trainA + trainB)", "cyclegan", [], root / "unpaired"),
            ("colorization", "colorization", [], root / "photos"),
            ("colorization + color_jitter 0.3", "colorization", ["data.color_jitter=0.3"], root / "photos"),
            ("sketch xdog (cached)", "sketch2photo", ["data.sketch=xdog"], root / "photos"),
            ("sketch canny (cached)", "sketch2photo", ["data.sketch=canny"], root / "photos"),
        ]
        if not args.no_hed:
            cases.append(("sketch hed (cached)", "sketch2photo", ["data.sketch=hed"], root / "photos"))
        for label, preset, extra, folder in cases:
            cfg = load_config(preset, extra).data  # load 286, crop 256, flip
            ds = build_dataset(cfg, folder, seed=0, log=log)
            cold = ""
            if cfg.kind == "sketch":  # first epoch: every drawing computed and written to the cache
                cold = f"{direct_speed(ds, range(len(ds))):.1f}"
            direct = f"{direct_speed(ds, range(len(ds), len(ds) + n)):.1f}"
            speeds = [f"{loader_speed(ds, w, n):.1f}" for w in (0, 2)]
            rows.append((label, direct, *speeds, cold))
            print(f"  {label}: {direct} {speeds} {cold}", flush=True)

    train_rows = []
    for preset, what in (("pix2pix", "pix2pix U-Net-256 + PatchGAN"), ("cyclegan", "CycleGAN 2x ResNet-9 + 2x PatchGAN")):
        ips = train_speed(preset, args.steps)
        train_rows.append((what, f"{ips:.3g}", f"{1 / ips:.1f}"))
        print(f"  train {preset}: {ips:.3g} img/s", flush=True)

    cpu = platform.processor() or platform.machine()
    print()
    print(f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.images} JPEGs, 512 px long side; load 286 -> crop 256, flip; batch 1.")
    print()
    print("| data pipeline | in-process, no DataLoader | DataLoader, 0 workers | DataLoader, 2 workers | first epoch, drawing sketches (in-process) |")
    print("|---|---:|---:|---:|---:|")
    for label, direct, w0, w2, cold in rows:
        print(f"| {label} | {direct} | {w0} | {w2} | {cold or '-'} |")
    print()
    print("| CPU training step (D + G updates), 256 px, batch 1 | img/s | s/step |")
    print("|---|---:|---:|")
    for what, ips, sec in train_rows:
        print(f"| {what} | {ips} | {sec} |")


if __name__ == "__main__":
    main()
