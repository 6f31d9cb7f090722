"""ONNX export of a trained generator, with its model card in the metadata and a parity check
against PyTorch on real photos; and an exact rewrite of nearest-upsample + 3x3 conv into a
2x2 conv + PixelShuffle, which does the same arithmetic in 16/36 of the multiply-adds."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from img2img import Img2ImgError
from img2img.nets.layers import UpConv
from img2img.runtime import ModelCard, ceil_to, resolve_generator


PARITY_TOLERANCE = 1e-4

# --------------------------------------------------------------------------------------------
# Nearest-2x upsample + reflect-pad(1) + 3x3 conv  ==  replicate-pad(1) + 2x2 conv (4x channels)
#                                                      + PixelShuffle(2) + crop 1 px per side
#
# One axis, low-res x[0..n), upsampled u[i] = x[i // 2], padded p = reflect_pad(u, 1):
#   p[-1] = u[1] = x[0] and p[2n] = u[2n-2] = x[n-1], i.e. p[i] = x[clamp(i // 2, 0, n-1)]:
#   reflect-padding the upsampled image is replicate-padding the low-res one, then upsampling.
# With r = replicate_pad(x, 1) (r[j] = x[clamp(j-1, 0, n-1)]) and 3 taps w0 w1 w2, output
#   y[2a]   = w0 p[2a-1] + w1 p[2a]   + w2 p[2a+1] = w0 r[a]   + (w1+w2) r[a+1]
#   y[2a+1] = w0 p[2a]   + w1 p[2a+1] + w2 p[2a+2] = (w0+w1) r[a+1] + w2 r[a+2]
# so each output phase is a 2-tap filter on r: even phase [w0, w1+w2] starting at r[a], odd
# phase [w0+w1, w2] starting at r[a+1]. A 2-tap conv over r gives z[s], s = 0..n, for both.
# PixelShuffle puts z_phase[s] at 2s + phase; giving the even filter shuffle phase 1 and the odd
# filter phase 0 places y[2a] at 2a+1 and y[2a+1] at 2(a+1) + 0 = 2a+2, i.e. y[o] at o + 1:
# crop one pixel from each side. In 2-D the taps fold separably: K = R_dy W R_dx^T.
# Multiply-adds per output channel and low-res pixel (4 output pixels): 4 phases x 4 taps x Cin = 16 Cin,
# against 4 x 9 Cin = 36 Cin for the 3x3 conv on the upsampled image.

# R[phase] maps the 3 taps of the high-res kernel onto the 2 taps over the replicate-padded input.
_FOLD = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)


class PixelShuffleUpConv(nn.Module):
    """Exact replacement for UpConv(mode="nearest"): see the derivation above."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.pad = nn.ReplicationPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels * 4, kernel_size=2, bias=bias)
        self.shuffle = nn.PixelShuffle(2)

    @classmethod
    def from_upconv(cls, up: UpConv) -> "PixelShuffleUpConv":
        conv: nn.Conv2d = up[2]
        out_c, in_c = conv.out_channels, conv.in_channels
        new = cls(in_c, out_c, bias=conv.bias is not None).to(conv.weight.device, conv.weight.dtype)
        w = conv.weight.detach().double()  # (out, in, 3, 3)
        k = torch.zeros(out_c, 2, 2, in_c, 2, 2, dtype=torch.float64)
        for dy in range(2):
            for dx in range(2):
                # Output phase (dy, dx) goes to shuffle phase (1 - dy, 1 - dx).
                k[:, 1 - dy, 1 - dx] = torch.einsum("ak,oikl,bl->oiab", _FOLD[dy], w, _FOLD[dx])
        # PixelShuffle reads output channel c, phase (i, j) from input channel 4c + 2i + j.
        with torch.no_grad():
            new.conv.weight.copy_(k.reshape(out_c * 4, in_c, 2, 2).to(conv.weight.dtype))
            if conv.bias is not None:
                new.conv.bias.copy_(conv.bias.detach().repeat_interleave(4))
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
        if channels == 1:
            p = p.convert("L")
        a = np.asarray(p, dtype=np.float32)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out.append(a / 127.5 - 1.0)
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


def _ort_cpu_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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
    Img2ImgError is raised. pixel_shuffle applies the exact upsampling rewrite above."""
    from img2img.checkpoint import load_generator

    start = time.perf_counter()
    output = Path(output)
    if output.suffix != ".onnx":
        raise Img2ImgError(f"output {output} should end in .onnx")
    path = resolve_generator(source, direction)
    card = ModelCard.from_generator_file(path)
    net = load_generator(path, "cpu").eval()
    export_net, rewrites = rewrite_upsampling(net) if pixel_shuffle else (net, 0)
    export_net.eval()

    m = card.size_multiple
    # Symbolic H = m * h_blocks keeps the divisibility the U-Net's skip concatenations need.
    # The example uses batch 2 and 2 blocks: torch.export specializes sizes of 0 or 1.
    rows = torch.export.Dim("h_blocks", min=max(1, card.min_size // m))
    cols = torch.export.Dim("w_blocks", min=max(1, card.min_size // m))
    batch = torch.export.Dim("batch", min=1)
    example = torch.zeros(2, card.input_channels, 2 * max(m, card.min_size), 2 * max(m, card.min_size))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    try:
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
        program.save(str(tmp), external_data=False)

        sizes = parity_sizes(card)
        diff = 0.0
        if check:
            session = _ort_cpu_session(tmp)
            name = session.get_inputs()[0].name
            for size in sizes:
                x = parity_images(card.input_channels, size)
                with torch.inference_mode():
                    ref = net(torch.from_numpy(x)).numpy()
                got = session.run(None, {name: x})[0]
                if got.shape != ref.shape:
                    raise Img2ImgError(f"exported model gives shape {got.shape} at {size}, PyTorch {ref.shape}")
                diff = max(diff, float(np.abs(got - ref).max()))
            if not diff <= tolerance:  # also catches NaN
                raise Img2ImgError(
                    f"exported ONNX model differs from PyTorch by {diff:.2e} (> {tolerance:.0e}) on real photos; "
                    f"not written. Try --no-pixel-shuffle or another --opset"
                )
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(output, card, diff, sizes, rewrites, time.perf_counter() - start)


def read_onnx_card(path: Path | str) -> ModelCard:
    """The model card stored in an exported .onnx file's metadata_props."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise Img2ImgError(f"{path}: not a readable ONNX file ({e})") from None
    return ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, str(path))

