import pytest
import torch
from torch import nn

from img2img.nets import MultiScaleDiscriminator, PatchDiscriminator, ResnetGenerator, UnetGenerator, build_generator


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
    with pytest.raises(ValueError, match="resnet, unet"):
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
