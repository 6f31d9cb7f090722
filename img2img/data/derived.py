"""Paired inputs derived from photos: luminance for colorization, line drawings for sketch-to-photo."""

from __future__ import annotations

import cv2
import numpy as np


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, uint8 HxW."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def xdog(rgb: np.ndarray, sigma: float = 0.8, k: float = 1.6, tau: float = 0.98, eps: float = -0.02, phi: float = 200.0) -> np.ndarray:
    """eXtended Difference of Gaussians line drawing (Winnemöller et al. 2012).

    D = G_sigma * I - tau * G_{k sigma} * I on luminance in [0, 1];
    out = 1 where D >= eps, else 1 + tanh(phi (D - eps)): dark lines on white, uint8 HxW.
    """
    grey = luminance(rgb).astype(np.float32) / 255.0
    d = cv2.GaussianBlur(grey, (0, 0), sigma) - tau * cv2.GaussianBlur(grey, (0, 0), sigma * k)
    out = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def canny(rgb: np.ndarray, low: int = 80, high: int = 160) -> np.ndarray:
    """Canny edges (Canny 1986) on lightly blurred luminance, drawn dark on white, uint8 HxW."""
    edges = cv2.Canny(cv2.GaussianBlur(luminance(rgb), (3, 3), 0), low, high)
    return 255 - edges


SKETCHERS = {"xdog": xdog, "canny": canny}
