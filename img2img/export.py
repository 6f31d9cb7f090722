"""ONNX export of a trained generator, with its model card in the metadata and a parity check
against PyTorch on real photos; and an exact rewrite of nearest-upsample + 3x3 conv into a
2x2 conv + PixelShuffle, which does the same arithmetic in 16/36 of the multiply-adds."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from img2img import Img2ImgError
from img2img.card import ModelCard
from img2img.checkpoint import generator_card, generator_path, load_generator
from img2img.io import atomic_write, to_unit
from img2img.nets.layers import UpConv, fold_upconv_weight
from img2img.runtime.backends import OrtBackend
from img2img.runtime.tiling import ceil_to

PARITY_TOLERANCE = 1e-4


class PixelShuffleUpConv(nn.Module):
    """Exact replacement for UpConv(mode="nearest") with the folded 2x2 kernel as its weight
    (the derivation is in img2img/nets/layers.py, above fold_upconv_weight)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.pad = nn.ReplicationPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels * 4, kernel_size=2, bias=bias)
        self.shuffle = nn.PixelShuffle(2)

    @classmethod
    def from_upconv(cls, up: UpConv) -> "PixelShuffleUpConv":
        conv: nn.Conv2d = up[2]
        new = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():  # folded in float64, so the only rounding is the final cast
            new.conv.weight.copy_(fold_upconv_weight(conv.weight.detach().double()).to(conv.weight.dtype))
            if conv.bias is not None:
                new.conv.bias.copy_(conv.bias.detach().repeat_interleave(4))  # one bias per shuffle phase
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(self.pad(x)))[..., 1:-1, 1:-1]


def rewrite_upsampling(net: nn.Module) -> tuple[nn.Module, int]:
    """A copy of net with every nearest-mode UpConv replaced by PixelShuffleUpConv; returns
    (copy, number replaced). Bilinear UpConvs are kept: their border weights do not fold exactly."""
    net = copy.deepcopy(net)
    count = 0

    def visit(module: nn.Module) -> None:
        nonlocal count
        for name, child in module.named_children():
            if isinstance(child, UpConv) and isinstance(child[0], nn.Upsample) and child[0].mode == "nearest":
                setattr(module, name, PixelShuffleUpConv.from_upconv(child))
                count += 1
            else:
                visit(child)

    visit(net)
    return net, count


def plain_upsampling(net: nn.Module) -> nn.Module:
    """A copy of net whose UpConvs compute the plain form, resize + reflect-pad + 3x3 conv
    (UpConv's nearest mode otherwise computes the sub-pixel form in forward): what
    --no-pixel-shuffle exports."""
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, UpConv):
            m.subpixel = False
    return net


# --------------------------------------------------------------------------------------------
# Real photos for the parity check


def parity_images(channels: int, size: tuple[int, int]) -> np.ndarray:
    """Two real photos (scikit-image's astronaut and coffee) resized to size (H, W), as a
    2 x C x H x W float32 batch in [-1, 1]. Without scikit-image, a smooth synthetic pair."""
    h, w = size
    try:
        from skimage import data

        photos = [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())]
    except ImportError:  # scikit-image is a dev extra; keep export usable without it
        yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) / 255
        rgb = np.stack([xx, yy, 0.5 + 0.5 * np.sin(12 * xx * yy)], -1)
        photos = [Image.fromarray((rgb * 255).astype(np.uint8)), Image.fromarray((rgb[::-1] * 255).astype(np.uint8))]
    out = []
    for p in photos:
        p = p.resize((w, h), Image.Resampling.BICUBIC)
        out.append(to_unit(np.asarray(p.convert("L") if channels == 1 else p)))
    return np.stack(out)


def parity_sizes(card: ModelCard) -> list[tuple[int, int]]:
    """Two different (H, W), both valid: a square and a 3:4 one of another scale."""
    m = card.size_multiple
    base = ceil_to(max(card.min_size, 64), m)
    step = m * max(1, 32 // m)
    return [(base, base), (base + step, base + 2 * step)]


# --------------------------------------------------------------------------------------------
# Export


@dataclass
class ExportResult:
    path: Path
    card: ModelCard
    max_abs_diff: float              # ONNX Runtime vs PyTorch, over the parity photos
    sizes: list[tuple[int, int]]     # (H, W) the parity check ran at
    upsample_rewrites: int           # UpConvs replaced by PixelShuffleUpConv
    seconds: float


def parity_diff(path: Path, net: nn.Module, card: ModelCard, sizes: list[tuple[int, int]], tolerance: float) -> float:
    """Largest |ONNX Runtime - PyTorch| over the parity photos at each size, through the
    runtime's own ONNX Runtime backend on CPU; Img2ImgError above tolerance."""
    backend = OrtBackend(path, "cpu")
    diff = 0.0
    for size in sizes:
        x = parity_images(card.input_channels, size)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        got = backend.run(x)
        if got.shape != ref.shape:
            raise Img2ImgError(f"exported model gives shape {got.shape} at {size}, PyTorch {ref.shape}")
        diff = max(diff, float(np.abs(got - ref).max()))
    if not diff <= tolerance:  # also catches NaN
        raise Img2ImgError(
            f"exported ONNX model differs from PyTorch by {diff:.2e} (> {tolerance:.0e}) on real photos; "
            f"not written. Try --no-pixel-shuffle or another --opset"
        )
    return diff


def export_onnx(
    source: Path | str,
    output: Path | str,
    direction: str | None = None,
    opset: int | None = None,
    pixel_shuffle: bool = True,
    check: bool = True,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export a generator (a run directory, G_AtoB by default, or a G_*.safetensors file) to a
    single .onnx file with dynamic batch, height and width, and the model card in its metadata.

    The exported graph is run by ONNX Runtime beside the original PyTorch module on two real
    photos at two sizes; if the largest difference exceeds `tolerance`, nothing is written and
    Img2ImgError is raised. pixel_shuffle applies the exact upsampling rewrite above; without
    it the plain resize + 3x3 conv form is exported."""
    start = time.perf_counter()
    output = Path(output)
    if output.suffix != ".onnx":
        raise Img2ImgError(f"output {output} should end in .onnx")
    path = generator_path(source, direction)
    card = generator_card(path)
    net = load_generator(path, "cpu").eval()
    export_net, rewrites = rewrite_upsampling(net) if pixel_shuffle else (plain_upsampling(net), 0)
    export_net.eval()

    m = card.size_multiple
    # Symbolic H = m * h_blocks keeps the divisibility the U-Net's skip concatenations need.
    # The example uses batch 2 and 2 blocks: torch.export specializes sizes of 0 or 1.
    rows = torch.export.Dim("h_blocks", min=max(1, card.min_size // m))
    cols = torch.export.Dim("w_blocks", min=max(1, card.min_size // m))
    batch = torch.export.Dim("batch", min=1)
    example = torch.zeros(2, card.input_channels, 2 * max(m, card.min_size), 2 * max(m, card.min_size))
    try:
        program = torch.onnx.export(
            export_net,
            (example,),
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch, 2: m * rows, 3: m * cols},),
            input_names=["image"],
            output_names=["translated"],
            opset_version=opset,
            verbose=False,
        )
    except Exception as e:  # noqa: BLE001 - the exporter raises many error types
        raise Img2ImgError(f"ONNX export of {path} failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    meta = card.to_metadata()
    meta["upsample_rewrite"] = "pixel_shuffle" if rewrites else "none"
    program.model.metadata_props.update(meta)
    program.model.doc_string = card.description

    sizes = parity_sizes(card)
    diffs: list[float] = []

    def save_checked(tmp: Path) -> None:
        """Saved to the temp file and checked there: a failed check leaves no output."""
        program.save(str(tmp), external_data=False)
        if check:
            diffs.append(parity_diff(tmp, net, card, sizes, tolerance))

    atomic_write(output, save_checked)
    return ExportResult(output, card, diffs[0] if diffs else 0.0, sizes, rewrites, time.perf_counter() - start)
