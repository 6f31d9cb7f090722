import numpy as np
import pytest
import torch
from torch import nn

from conftest import needs_hed, photo
from img2img.data.derived import colour_hints, xdog
from img2img.data.transforms import to_tensor
from img2img.io import from_unit
from img2img.metrics import psnr
from img2img.nets import MultiScaleDiscriminator, PatchDiscriminator, ResnetGenerator, UnetGenerator, build_generator
from img2img.nets.generators import GeneratorSpec, VggUnetGenerator, generator_to_train
from img2img.nets.layers import HintWash


@pytest.mark.parametrize("h,w", [(32, 32), (48, 64), (64, 36)])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_resnet_generator_shapes(h, w, upsample):
    g = ResnetGenerator(3, 3, ngf=4, n_blocks=2, upsample=upsample)
    y = g(torch.randn(2, 3, h, w))
    assert y.shape == (2, 3, h, w)
    assert y.abs().max() <= 1.0  # tanh


@pytest.mark.parametrize("h,w", [(32, 32), (32, 64), (64, 96)])
def test_unet_generator_shapes(h, w):
    g = UnetGenerator(1, 3, num_downs=5, ngf=4)
    assert g(torch.randn(2, 1, h, w)).shape == (2, 3, h, w)


def test_unet_256_default_runs_at_256():
    g = UnetGenerator(3, 3, ngf=4).eval()  # num_downs=8: bottleneck 1x1 at 256 px
    assert g(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("in_channels,h,w", [(1, 32, 32), (3, 32, 64), (1, 64, 48)])
def test_vgg_unet_shapes_and_frozen_trunk(in_channels, h, w):
    g = VggUnetGenerator(in_channels, 3, num_downs=4, ngf=4)
    y = g(torch.randn(2, in_channels, h, w))
    assert y.shape == (2, 3, h, w) and y.abs().max() <= 1.0
    assert g.size_rules(num_downs=4) == (16, 16) == (g.size_multiple, g.min_size)
    assert all(not p.requires_grad for p in g.trunk.parameters())
    assert all(p.requires_grad for n, p in g.named_parameters() if not n.startswith("trunk."))


def test_vgg_unet_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="in_channels 1 or 3"):
        VggUnetGenerator(4, 3, num_downs=4)
    with pytest.raises(ValueError, match="num_downs >= trunk_blocks"):
        VggUnetGenerator(1, 3, num_downs=3)
    with pytest.raises(ValueError, match="num_downs >= trunk_blocks"):
        VggUnetGenerator(1, 3, num_downs=4, trunk_blocks=5)
    with pytest.raises(ValueError, match="1 to 5 VGG16 blocks"):
        VggUnetGenerator(1, 3, num_downs=6, trunk_blocks=6)


def test_vgg_unet_with_the_fifth_block():
    """trunk_blocks=5 adds VGG16 block 5 (1/16) to the trunk; the learned levels start below it."""
    g = VggUnetGenerator(1, 3, num_downs=5, ngf=4, trunk_blocks=5)
    assert len(g.trunk) == len(g.lateral) == 5 and len(g.downs) == 1
    assert g(torch.randn(1, 1, 32, 64)).shape == (1, 3, 32, 64)
    assert g.spec.kwargs["trunk_blocks"] == 5


@needs_hed
@pytest.mark.parametrize("trunk_blocks", [4, 5])
def test_vgg_unet_trains_around_the_pretrained_trunk(trunk_blocks):
    """generator_to_train loads HED's first VGG16 blocks; a training step moves every other
    weight and leaves the trunk exactly as loaded."""
    from img2img.data.hed import load_hed

    spec = GeneratorSpec("vgg_unet", {"in_channels": 1, "out_channels": 3, "num_downs": 5, "ngf": 4, "trunk_blocks": trunk_blocks})
    torch.manual_seed(0)
    g = generator_to_train(spec)
    hed = load_hed()
    assert len(g.trunk) == trunk_blocks
    for mine, theirs in zip(g.trunk, hed.blocks):
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
    trunk = {k: v.clone() for k, v in g.trunk.state_dict().items()}
    rest = {k: v.clone() for k, v in g.state_dict().items() if not k.startswith("trunk.")}
    grey = torch.from_numpy(np.asarray(photo("chelsea", 32).convert("L"), dtype=np.float32) / 127.5 - 1)[None, None]
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    g(grey).abs().mean().backward()
    opt.step()
    assert all(torch.equal(v, g.trunk.state_dict()[k]) for k, v in trunk.items())
    moved = [k for k, v in rest.items() if v.dtype.is_floating_point and not torch.equal(v, g.state_dict()[k])]
    assert len(moved) > 0.9 * len([v for v in rest.values() if v.dtype.is_floating_point])


@pytest.mark.parametrize("arch,kwargs,bad", [("resnet", {"n_blocks": 1}, (30, 32)), ("unet", {"num_downs": 4}, (32, 40))])
def test_size_not_multiple_of_stride_is_a_clear_error(arch, kwargs, bad):
    g = build_generator(arch, ngf=4, **kwargs)
    with pytest.raises(ValueError, match=rf"multiples of {g.size_multiple}.*{bad[0]}x{bad[1]}.*pad"):
        g(torch.randn(1, 3, *bad))


def test_no_transposed_convolution_anywhere():
    for g in (ResnetGenerator(ngf=4, n_blocks=1), UnetGenerator(ngf=4, num_downs=5), ResnetGenerator(ngf=4, upsample="bilinear")):
        kinds = {type(m) for m in g.modules()}
        assert not kinds & {nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d}
        assert nn.Upsample in kinds


def test_unknown_generator_lists_choices():
    with pytest.raises(ValueError, match="resnet, unet, vgg_unet"):
        build_generator("vgg")


def test_patchgan_receptive_field_and_output():
    d = PatchDiscriminator(6, ndf=8, n_layers=3)
    out = d(torch.randn(2, 6, 70, 70))
    assert out.shape == (2, 1, 6, 6)
    # 70x70 receptive field: the centre output ignores a pixel 36 px away but not 34.
    x = torch.zeros(1, 6, 140, 140, requires_grad=True)
    d(x)[0, 0, 8, 8].backward()
    cols = x.grad.abs().sum((0, 1, 2)).nonzero().flatten()
    assert cols.max() - cols.min() + 1 == 70


def test_every_discriminator_conv_is_spectrally_normalized():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(3, ndf=8, n_layers=3, num_scales=2)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") and hasattr(m.parametrizations, "weight") for m in convs)
    d.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        d(torch.randn(1, 3, 64, 64))
    d.eval()
    for m in convs:
        w = m.weight.flatten(1)  # normalized weight
        sigma = torch.linalg.matrix_norm(w.detach(), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_spectral_norm_can_be_disabled():
    d = PatchDiscriminator(3, ndf=4, spectral=False)
    assert not any(hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, nn.Conv2d))


def test_multiscale_outputs_one_map_per_scale():
    d = MultiScaleDiscriminator(3, ndf=4, n_layers=2, num_scales=3)
    outs = d(torch.randn(2, 3, 64, 64))
    assert len(outs) == 3 and outs[0].shape[-1] > outs[1].shape[-1] > outs[2].shape[-1]


@needs_hed
def test_vgg_features_see_grey_as_its_rgb_repetition():
    """The perceptual loss's VGG trunk (the same Caffe input conversion as vgg_unet's)."""
    from img2img.nets.vgg import VGGFeatures

    grey = torch.from_numpy(np.asarray(photo("coffee", 32).convert("L"), dtype=np.float32) / 127.5 - 1)[None, None]
    vgg = VGGFeatures(blocks=2)
    with torch.no_grad():
        a, b = vgg(grey), vgg(grey.repeat(1, 3, 1, 1))
    assert [t.shape[1:] for t in a] == [(64, 32, 32), (128, 16, 16)]
    assert all(torch.allclose(x, y) for x, y in zip(a, b)) and a[0].abs().sum() > 0


def _drawing_with_marks(name: str, size: int, marks: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """A real photo's XDoG drawing with `marks` colour hints of it, as the generator's input, and the photo."""
    rgb = np.asarray(photo(name, size))
    a = colour_hints(xdog(rgb), rgb, marks, np.random.default_rng(seed))
    return to_tensor(a)[None], rgb


def test_hint_wash_keeps_the_lines_and_spreads_the_marks_colours():
    bare, _ = _drawing_with_marks("coffee", 128, 0, 0)
    out = HintWash()(bare)
    assert out.shape == (1, 5, 128, 128)
    assert torch.allclose(out[:, :1], bare[:, :1], atol=1e-6)  # the lines as they were (R = G = B)
    assert torch.equal(out[:, 1:4], torch.zeros(1, 3, 128, 128)) and torch.equal(out[:, 4], -torch.ones(1, 128, 128))  # mid-grey, no coverage

    one, _ = _drawing_with_marks("coffee", 128, 1, 3)
    out = HintWash()(one)
    mark = (one[0] != one[0, :1]).any(dim=0)  # where R, G and B differ
    colour = one[0, :, mark][:, 0]
    assert torch.allclose(out[0, 1:4], colour[:, None, None].expand(3, 128, 128), atol=1e-4)  # one mark colours all
    assert out[0, 4].min() < out[0, 4].max() - 0.2  # coverage falls off away from it
    assert torch.equal(out[0, 0, mark], torch.ones(int(mark.sum())))  # the mark is out of the lines: white
    assert torch.allclose(out[0, 0, ~mark], bare[0, 0, ~mark], atol=1e-6)  # the lines elsewhere as they were

    gains = []  # eight marks: the wash is a blurred guess of the photo, closer to it than mid-grey
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        x, rgb = _drawing_with_marks(name, 128, 8, 1)
        wash = from_unit(HintWash()(x)[0, 1:4].numpy())
        gains.append(psnr(wash, rgb) - psnr(np.full_like(rgb, 128), rgb))
    assert min(gains) > 0 and np.mean(gains) > 2  # dB (0.4 on the astronaut's white suit on black, 7.5 on the rocket's sky)


def test_hint_wash_computes_in_float32_under_bf16_autocast():
    x, _ = _drawing_with_marks("astronaut", 64, 8, 2)
    wash = HintWash()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(wash(x), wash(x.clone()).float()) and wash(x).dtype == torch.float32
    assert torch.equal(wash(x), HintWash()(x))


def test_unet_with_hint_wash_sees_the_marks_spread():
    g = UnetGenerator(3, 3, num_downs=5, ngf=4, hint_wash=True).eval()
    x, _ = _drawing_with_marks("chelsea", 64, 8, 0)
    assert g(x).shape == (1, 3, 64, 64) and g.downs[0][0].in_channels == 5  # lines, wash RGB, coverage
    assert GeneratorSpec.from_json(g.spec.to_json()).kwargs["hint_wash"] is True
    older = GeneratorSpec.from_json('{"arch": "unet", "kwargs": {"in_channels": 3, "num_downs": 5}}')
    assert older.kwargs["hint_wash"] is False  # files from before the option build as they were
    with pytest.raises(ValueError, match="in_channels 3"):
        UnetGenerator(1, 3, num_downs=5, hint_wash=True)
    with pytest.raises(ValueError, match="num_downs >= 4"):
        UnetGenerator(3, 3, num_downs=3, hint_wash=True)


def test_hint_anchor_sets_the_local_mean_to_the_wash_where_marks_cover():
    """y' = clamp(y + coverage (wash - N(y))): for a flat y (N(y) = y) that is exact; no marks, no change."""
    wash = HintWash()
    field = wash(_drawing_with_marks("coffee", 64, 3, 0)[0])
    coverage = (field[:, 4:] + 1) / 2
    flat = torch.full((1, 3, 64, 64), -0.5)
    assert torch.allclose(wash.anchor(flat, field), -0.5 + coverage * (field[:, 1:4] + 0.5), atol=1e-5)
    y = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(wash.anchor(y, wash(_drawing_with_marks("coffee", 64, 0, 0)[0])), y)  # coverage 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert wash.anchor(y.bfloat16(), field).dtype == torch.bfloat16


def test_unet_with_hint_anchor_takes_the_marks_colours_on_real_photos():
    """The anchored generator equals the plain one on bare drawings; with 8 marks even an untrained
    one is closer to each photo, since the marks set its colours; gradients reach the network."""
    torch.manual_seed(0)
    g = UnetGenerator(3, 3, num_downs=5, ngf=4, hint_wash=True, hint_anchor=True).eval()
    plain = UnetGenerator(3, 3, num_downs=5, ngf=4, hint_wash=True).eval()
    plain.load_state_dict(g.state_dict())
    assert GeneratorSpec.from_json(g.spec.to_json()).kwargs["hint_anchor"] is True
    with torch.no_grad():
        bare, _ = _drawing_with_marks("chelsea", 128, 0, 0)
        assert torch.equal(g(bare), plain(bare))
        gains = []
        for name in ("astronaut", "chelsea", "coffee", "rocket"):
            x, rgb = _drawing_with_marks(name, 128, 8, 1)
            gains.append(psnr(from_unit(g(x)[0].numpy()), rgb) - psnr(from_unit(plain(x)[0].numpy()), rgb))
    assert min(gains) > 0 and np.mean(gains) > 2, gains  # dB
    g.train()(x).mean().backward()
    assert g.downs[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs hint_wash"):
        UnetGenerator(3, 3, num_downs=5, hint_anchor=True)
