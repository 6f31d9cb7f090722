"""ONNX export: the exact pixel-shuffle rewrite, parity with PyTorch on real photos, the model card."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data
from torch.nn import functional as F

from conftest import photo, save_run
from img2img import Img2ImgError
from img2img.card import read_onnx_card
from img2img.checkpoint import generator_card, load_generator
from img2img.config import load_config
from img2img.data.derived import colour_hints, xdog
from img2img.data.transforms import to_tensor
from img2img.export import PixelShuffleUpConv, export_onnx, plain_upsampling, rewrite_upsampling
from img2img.io import NORMALIZATION
from img2img.nets.generators import build_generator
from img2img.nets.layers import UpConv

RESNET = ["model.generator=resnet", "model.ngf=8", "model.n_blocks=1", "data.load_size=72", "data.crop_size=64"]
UNET = ["model.generator=unet", "model.ngf=4", "model.num_downs=4", "model.norm_g=batch", "model.dropout=0.5"]


def photo_batch(channels: int, h: int, w: int) -> torch.Tensor:
    """Astronaut and coffee resized to h x w, in [-1, 1]."""
    out = []
    for a in (data.astronaut(), data.coffee()):
        img = Image.fromarray(a).resize((w, h), Image.Resampling.BICUBIC)
        img = img.convert("L") if channels == 1 else img
        x = np.asarray(img, dtype=np.float32)
        out.append(x[None] if x.ndim == 2 else x.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out) / 127.5 - 1.0)


# ---------------------------------------------------------------------------- pixel shuffle


def test_reflect_pad_of_upsampled_is_upsampled_replicate_pad():
    """The identity the rewrite rests on: reflect-pad(1) of a nearest-2x upsample equals the
    nearest-2x upsample of a replicate-padded image, cropped by 1 on each side."""
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    lhs = F.pad(up(x), (1, 1, 1, 1), mode="reflect")
    rhs = up(F.pad(x, (1, 1, 1, 1), mode="replicate"))[..., 1:-1, 1:-1]
    assert torch.equal(lhs, rhs)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 10)])
def test_pixel_shuffle_upconv_equals_upconv(size):
    """Against the plain form, resize + reflect-pad + 3x3 conv (UpConv's own nearest forward
    computes the sub-pixel form too)."""
    torch.manual_seed(0)
    up = UpConv(5, 3, "nearest", bias=True).double()
    up.subpixel = False
    ps = PixelShuffleUpConv.from_upconv(up)
    assert ps.conv.kernel_size == (2, 2) and ps.conv.out_channels == 12
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    with torch.no_grad():
        assert (ps(x) - up(x)).abs().max() < 1e-12  # exact up to float64 rounding
        up32, ps32 = up.float(), PixelShuffleUpConv.from_upconv(up.float())
        assert (ps32(x.float()) - up32(x.float())).abs().max() < 1e-5


@pytest.mark.parametrize("overrides", [RESNET, [*UNET, "model.norm_g=instance"]], ids=["resnet", "unet"])
def test_rewritten_generator_matches_on_real_photos(overrides):
    spec = load_config(None, overrides).model.generator_spec()
    net = spec.build().eval()
    new, count = rewrite_upsampling(net)
    assert count == (2 if spec.arch == "resnet" else 4)
    assert not any(isinstance(m, UpConv) for m in new.modules())
    plain = plain_upsampling(net)
    assert all(not m.subpixel for m in plain.modules() if isinstance(m, UpConv))
    x = photo_batch(3, 64, 96)
    with torch.no_grad():
        assert (new(x) - plain(x)).abs().max() < 1e-5
        assert (new(x) - net(x)).abs().max() < 1e-5


def test_bilinear_upconv_is_kept():
    net = build_generator("resnet", ngf=4, n_blocks=1, upsample="bilinear")
    _, count = rewrite_upsampling(net)
    assert count == 0


# ---------------------------------------------------------------------------- export + parity


@pytest.mark.parametrize(
    "overrides,multiple",
    [([*RESNET, "data.kind=sketch", "model.input_nc=1", "name=shoes"], 4), (UNET, 16)],
    ids=["resnet-sketch-grey", "unet-batchnorm-rgb"],
)
def test_export_matches_pytorch_on_real_photos(tmp_path, overrides, multiple):
    run = save_run(tmp_path / "run", overrides)
    result = export_onnx(run, tmp_path / "g.onnx")
    assert result.max_abs_diff < 1e-4
    assert result.upsample_rewrites > 0
    card = result.card
    assert card.size_multiple == multiple

    # Dynamic batch, height and width: other sizes and batch sizes than the parity check used.
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == card.input_channels and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    net = load_generator(run / "G_AtoB.safetensors")
    for h, w in [(multiple * 3, multiple * 5), (64 + multiple, 64)]:
        x = photo_batch(card.input_channels, h, w)[:1].repeat(3, 1, 1, 1)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            ref = net(x).numpy()
        assert got.shape == (3, card.output_channels, h, w)
        assert np.abs(got - ref).max() < 1e-4

    # The model card survives the round trip and is what ONNX Runtime alone shows a web UI.
    assert read_onnx_card(result.path) == card == generator_card(run / "G_AtoB.safetensors")
    assert card.normalization == NORMALIZATION == "[-1,1]: x/127.5-1"
    meta = session.get_modelmeta()
    assert meta.custom_metadata_map["upsample_rewrite"] == "pixel_shuffle"
    assert meta.description == card.description
    if card.arch == "resnet":
        assert (card.method, card.direction, card.task) == ("pix2pix", "AtoB", "sketch2photo")
        assert (card.input_channels, card.output_channels, card.train_size, card.min_size) == (1, 3, 64, 8)
        assert meta.custom_metadata_map["task"] == "sketch2photo"
        assert "sketch2photo" in card.description and card.name == "shoes" and "'shoes'" in card.description
    else:
        assert (card.task, card.input_channels, card.train_size, card.min_size) == ("paired", 3, 256, 16)


@pytest.mark.parametrize("anchor", [False, True])
def test_hint_wash_export_matches_pytorch_on_drawings_with_colour_marks(tmp_path, anchor):
    """A sketch model that spreads colour hints (model.hint_wash; with hint_anchor, its output
    anchored to them) exports with the spreading, and ONNX Runtime matches PyTorch on real
    photos' drawings with marks, at sizes the parity check did not use."""
    overrides = ["data.kind=sketch", "data.sketch=xdog", "data.colour_hints=true", "model.input_nc=3", "model.hint_wash=true",
                 f"model.hint_anchor={anchor}", "model.generator=unet", "model.ngf=4", "model.num_downs=4",
                 "data.crop_size=32", "data.load_size=40"]  # fmt: skip
    run = save_run(tmp_path / "run", overrides)
    result = export_onnx(run, tmp_path / "g.onnx")
    assert result.max_abs_diff < 1e-4 and result.card.takes_colour_hints
    assert "colour marks spread over the image" in result.card.description
    assert ("setting the output's local colour" in result.card.description) == anchor
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    net = load_generator(run / "G_AtoB.safetensors")
    for name, (h, w) in [("coffee", (64, 96)), ("chelsea", (48, 160))]:
        rgb = np.asarray(photo(name, 160))[:h, :w]
        marked = colour_hints(xdog(rgb), rgb, 6, np.random.default_rng(0))
        x = to_tensor(marked)[None]
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - net(x).numpy()).max() < 1e-4


@pytest.mark.parametrize("vgg_blocks,num_downs", [(4, 4), (5, 5)])
def test_vgg_unet_export_matches_pytorch_on_real_photos(tmp_path, vgg_blocks, num_downs):
    """The VGG-trunk generator (grey -> RGB, as colorization trains it) exports with its trunk,
    and ONNX Runtime matches PyTorch on real photos; the card keeps its shape rules."""
    overrides = ["data.kind=colorization", "model.generator=vgg_unet", "model.input_nc=1", "model.ngf=4",
                 f"model.num_downs={num_downs}", f"model.vgg_blocks={vgg_blocks}", "data.crop_size=32", "data.load_size=40"]  # fmt: skip
    run = save_run(tmp_path / "run", overrides)
    result = export_onnx(run, tmp_path / "g.onnx")
    assert result.max_abs_diff < 1e-4 and result.upsample_rewrites == num_downs
    assert (result.card.arch, result.card.size_multiple, result.card.input_channels) == ("vgg_unet", 2**num_downs, 1)
    assert f"{num_downs} downsamplings (the first {vgg_blocks - 1} in a frozen VGG16 trunk)" in result.card.description
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = photo_batch(1, 64, 96)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - load_generator(run / "G_AtoB.safetensors")(x).numpy()).max() < 1e-4


def test_no_pixel_shuffle_exports_the_plain_form(tmp_path):
    """--no-pixel-shuffle: resize + 3x3 conv in the graph (no sub-pixel convolution), still
    matching PyTorch; the default has DepthToSpace (PixelShuffle) and no resize."""
    run = save_run(tmp_path / "run", RESNET)
    ops = {}
    for shuffle in (True, False):
        result = export_onnx(run, tmp_path / f"{shuffle}.onnx", pixel_shuffle=shuffle)
        assert result.max_abs_diff < 1e-4
        ops[shuffle] = {n.op_type for n in onnx.load(str(result.path)).graph.node}
        kernels = {tuple(i.dims[2:]) for i in onnx.load(str(result.path)).graph.initializer if len(i.dims) == 4}
        assert ((2, 2) in kernels) == shuffle  # the folded 2x2 kernels only in the rewrite
    assert "DepthToSpace" in ops[True] and "Resize" not in ops[True]
    assert "Resize" in ops[False] and "DepthToSpace" not in ops[False]


def test_cyclegan_exports_the_asked_direction(tmp_path):
    run = save_run(tmp_path / "run", [*RESNET, "method=cyclegan", "data.kind=unpaired"], seed=3)
    result = export_onnx(run, tmp_path / "b2a.onnx", direction="BtoA", pixel_shuffle=False)
    assert result.card.direction == "BtoA" and result.card.task == "style" and result.card.method == "cyclegan"
    assert result.upsample_rewrites == 0
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = photo_batch(3, 64, 64)
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        b2a = load_generator(run / "G_BtoA.safetensors")(x).numpy()
        a2b = load_generator(run / "G_AtoB.safetensors")(x).numpy()
    assert np.abs(got - b2a).max() < 1e-4
    assert np.abs(got - a2b).max() > 1e-2  # really the other generator


def test_export_errors(tmp_path):
    run = save_run(tmp_path / "run", UNET)
    with pytest.raises(Img2ImgError, match="no G_BtoA.safetensors.*G_AtoB.safetensors"):
        export_onnx(run, tmp_path / "x.onnx", direction="BtoA")
    with pytest.raises(Img2ImgError, match="is the AtoB generator"):
        export_onnx(run / "G_AtoB.safetensors", tmp_path / "x.onnx", direction="BtoA")
    with pytest.raises(Img2ImgError, match=r"\.onnx"):
        export_onnx(run, tmp_path / "x.bin")
    with pytest.raises(Img2ImgError, match="does not exist"):
        export_onnx(tmp_path / "missing", tmp_path / "x.onnx")
    # A failed parity check writes nothing.
    with pytest.raises(Img2ImgError, match="differs from PyTorch"):
        export_onnx(run, tmp_path / "x.onnx", tolerance=0.0)
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".*tmp")) == []


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from img2img.cli import app

    run = save_run(tmp_path / "run", RESNET)
    out = tmp_path / "models" / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(out), "--opset", "18"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "max abs diff" in result.output
    assert onnx.load(str(out)).opset_import[0].version == 18
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(out), "--direction", "BtoA"])
    assert result.exit_code != 0 and isinstance(result.exception, Img2ImgError)
