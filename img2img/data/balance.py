"""Colour balance of a photo folder: per-photo sampling weights that move the mean colour of
what training sees onto ImageNet's (data.balance_colour).

A few hundred photos from a few sources lean to one palette (ours: sky, walls and streets,
bluer and greyer than photos at large), and a colorization or sketch-to-photo model learns
that palette as its prior. The weights are the maximum-entropy ones (the closest to uniform in
KL divergence) whose weighted mean chroma equals the target:

    w_i ∝ exp(λ · c_i),   λ chosen so that Σ w_i c_i / Σ w_i = t,

with c_i a photo's mean (Cb, Cr). λ minimises the convex dual log Σ exp(λ · (c_i − t)), whose
gradient is the weighted mean minus t and whose Hessian is the weighted covariance: Newton's
method converges in a few steps when t lies inside the photos' convex hull, and diverges
(λ grows without bound) when it does not, which is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from img2img import Img2ImgError
from img2img.data.images import ImageReadError, load_image
from img2img.metrics import CBCR, mean_chroma

# ImageNet's per-channel mean (the torchvision normalisation constants), as (Cb, Cr) in levels
# of 255: about (-7.6, +4.7), warmer than neutral grey.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_CHROMA = CBCR @ (255 * np.array(IMAGENET_MEAN_RGB))

_THUMB = 128  # mean colour of a photo, measured on a thumbnail of this side


def photo_chroma(path: Path) -> np.ndarray:
    """Mean (Cb, Cr) of a photo (levels of 255), from a thumbnail."""
    image = load_image(path, draft=(_THUMB, _THUMB))
    image.thumbnail((_THUMB, _THUMB), Image.Resampling.BOX)
    return mean_chroma(np.asarray(image))


def tilt_weights(values: np.ndarray, target: np.ndarray, iters: int = 50) -> np.ndarray:
    """Maximum-entropy weights (summing to 1) over the rows of values (n, d) whose weighted mean
    is target (d,). Raises Img2ImgError when the target is outside the rows' convex hull."""
    x = np.asarray(values, np.float64) - np.asarray(target, np.float64)
    lam = np.zeros(x.shape[1])

    def weights(lam: np.ndarray) -> np.ndarray:
        z = x @ lam
        w = np.exp(z - z.max())
        return w / w.sum()

    def dual(lam: np.ndarray) -> float:
        z = x @ lam
        return float(z.max() + np.log(np.exp(z - z.max()).sum()))

    for _ in range(iters):
        w = weights(lam)
        grad = w @ x
        if np.abs(grad).max() < 1e-6:
            return w
        hess = (x * w[:, None]).T @ x - np.outer(grad, grad)
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(len(lam)), grad, rcond=None)[0]
        t, f0 = 1.0, dual(lam)
        while dual(lam - t * step) > f0 - 0.25 * t * (grad @ step) and t > 1e-10:  # backtracking
            t /= 2
        lam = lam - t * step
    raise Img2ImgError(
        f"the photos' colours cannot average to {np.round(target, 1).tolist()} (Cb, Cr): every photo is on one side of it"
    )


def balance_colour(photos: list[Path]) -> tuple[np.ndarray | None, str]:
    """Per-photo sampling weights (mean 1) that move the photos' mean colour onto ImageNet's,
    and a line for the log that says how far they moved it and how uneven they are. None (draw
    uniformly) when no weights reach it: a folder of only warm photos still trains."""
    chroma, readable = [], []
    for p in photos:
        try:
            chroma.append(photo_chroma(p))
            readable.append(True)
        except ImageReadError:  # truncated: weight 0 here; the dataset reports it when it meets it
            readable.append(False)
    chroma, readable = np.array(chroma), np.array(readable)
    w = np.zeros(len(photos))
    try:
        w[readable] = tilt_weights(chroma, IMAGENET_CHROMA)
    except Img2ImgError as e:
        return None, f"colour balance skipped, photos drawn uniformly: {e} (add photos of other colours)"
    heaviest = int(w.argmax())
    summary = (
        f"colour balance: mean Cb/Cr {chroma.mean(0)[0]:+.1f}/{chroma.mean(0)[1]:+.1f} -> ImageNet's "
        f"{IMAGENET_CHROMA[0]:+.1f}/{IMAGENET_CHROMA[1]:+.1f}; {1 / (w**2).sum():.0f} effective photos of "
        f"{len(photos)}, the heaviest x{w[heaviest] * len(w):.1f} ({photos[heaviest].name})"
    )
    return w * len(w), summary
