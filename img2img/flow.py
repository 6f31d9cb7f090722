"""Optical flow between consecutive video frames (OpenCV's Farneback; numpy + cv2 only): the
flicker measure (img2img.metrics.flicker) and the flow-guided blending of video outputs
(img2img.video.FlowBlender) move frame t-1 onto frame t with it."""

from __future__ import annotations

import numpy as np

FLOW_SIDE = 480  # flow is estimated at most this wide or high and scaled up: 4x cheaper at 720p, as smooth


def backward_flow(grey: np.ndarray, prev_grey: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """HxWx2 float32 flow from frame t to frame t-1: frame_t(x) ~ frame_{t-1}(x + flow(x)).
    With max_side, estimated on frames downscaled to fit it, then resized and scaled back."""
    import cv2

    h, w = grey.shape
    s = min(1.0, max_side / max(h, w)) if max_side else 1.0
    if s < 1:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        grey, prev_grey = (cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in (grey, prev_grey))
    flow = cv2.calcOpticalFlowFarneback(grey, prev_grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if s < 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / np.float32(s)
    return flow


def warp(prev: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """prev (HxW or HxWxC) resampled at x + flow(x): frame t-1 moved onto frame t; and the mask
    of pixels whose source lies inside the frame."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return cv2.remap(prev, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), inside
