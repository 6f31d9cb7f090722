"""The methods' D and G steps on their own (tiny widths): which nets learn, which stay frozen;
the image pool; batch-norm recalibration; CPU precision choice."""

import pytest
import torch

from conftest import TINY
from img2img import Img2ImgError
from img2img.config import load_config
from img2img.methods import CycleGAN, build_method
from img2img.methods.base import STAT_G_GRAD
from img2img.methods.common import Amp, ImagePool, choose_amp, recalibrate_batch_norm

CPU = torch.device("cpu")
FP32 = Amp("cpu", None)


def snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}


def changed(before, net):
    after = net.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def batch(channels_a=3, n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, channels_a, size, size, generator=g) * 2 - 1, "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def pix2pix(extra=()):
    cfg = load_config("pix2pix", [*TINY, *extra])
    torch.manual_seed(0)
    return build_method(cfg, CPU, FP32, 10, 5)


def test_pix2pix_d_step_updates_only_d():
    m = pix2pix()
    b = batch()
    fake = m.G(b["A"]).detach()
    g0, d0 = snapshot(m.G), snapshot(m.D)
    stats = m.d_step(b["A"], b["B"], fake, 0.0)
    assert set(stats) == {"D"}
    assert not changed(g0, m.G)
    assert changed(d0, m.D)  # every D conv's weight moved
    assert all(p.requires_grad for p in m.D.parameters())


def test_pix2pix_g_step_updates_only_g_and_leaves_d_trainable():
    m = pix2pix()
    b = batch()
    fake = m.G(b["A"])
    g0 = snapshot(m.G)
    d_weights = {k: v.detach().clone() for k, v in m.D.named_parameters()}  # not SN's power-iteration buffers
    stats = m.g_step(b["A"], b["B"], fake, 0.0)
    assert {"G", "L1", STAT_G_GRAD} <= set(stats) and stats[STAT_G_GRAD] > 0
    assert changed(g0, m.G)
    assert all(torch.equal(v, dict(m.D.named_parameters())[k]) for k, v in d_weights.items())  # D untouched
    assert all(p.grad is None for p in m.D.parameters())   # D was frozen: no gradients accumulated
    assert all(p.requires_grad for p in m.D.parameters())  # ... and unfrozen again after


def test_pix2pix_feature_matching_and_chroma_terms():
    m = pix2pix(["loss.lambda_fm=10", "loss.l1_space=chroma", "model.input_nc=1", "data.kind=colorization"])
    b = batch(channels_a=1)
    stats = m.g_step(b["A"], b["B"], m.G(b["A"]), 0.0)
    assert stats["FM"] > 0
    # Chroma L1 ignores a pure luma change: B + c for every channel shifts Y alone.
    from img2img.losses import chroma_l1_loss

    assert chroma_l1_loss(b["B"] + 0.3, b["B"]).item() == pytest.approx(0.0, abs=1e-6)
    assert chroma_l1_loss(b["B"].flip(1), b["B"]).item() > 0.05


def test_cyclegan_steps_update_the_right_nets():
    cfg = load_config("cyclegan", [*TINY, "train.pool_size=0"])
    torch.manual_seed(0)
    m: CycleGAN = build_method(cfg, CPU, FP32, 10, 5)
    b = batch()
    params = {k: {n: p.detach().clone() for n, p in v.named_parameters()} for k, v in m.nets().items()}
    fake_b, fake_a = m.G_AB(b["A"]), m.G_BA(b["B"])
    m.g_step(b["A"], b["B"], fake_a, fake_b, 0.0)
    moved = {k for k, net in m.nets().items() if changed(params[k], net)}
    assert moved == {"G_AB", "G_BA"}
    before = {k: snapshot(v) for k, v in m.nets().items()}
    stats = m.d_step(b["A"], b["B"], fake_a.detach(), fake_b.detach(), 0.0)
    assert set(stats) == {"D_A", "D_B"} == set(m.d_loss_keys)
    moved = {k for k, net in m.nets().items() if changed(before[k], net)}
    assert moved == {"D_A", "D_B"}
    assert set(m.generators()) == {"AtoB", "BtoA"}


@pytest.mark.parametrize("preset,names", [("pix2pix", {"AtoB": "G"}), ("cyclegan", {"AtoB": "G_AB", "BtoA": "G_BA"})])
def test_weight_average_is_what_is_saved_and_sampled(preset, names):
    """train.ema_decay d: after every G step, avg <- d * avg + (1 - d) * w (the first step copies);
    the averages are the generators a checkpoint saves and the sample grid shows."""
    cfg = load_config(preset, [*TINY, "train.ema_decay=0.75", "train.pool_size=0"])
    torch.manual_seed(0)
    m = build_method(cfg, CPU, FP32, 10, 5)
    expected = None
    for step in range(3):
        m.train_step(batch(seed=step), 0.0)
        w = {d: snapshot(m.nets()[n]) for d, n in names.items()}
        expected = w if expected is None else {
            d: {k: 0.75 * expected[d][k] + 0.25 * w[d][k] for k in w[d]} for d in names
        }
    saved = m.generators()
    for d, n in names.items():
        assert saved[d] is not m.nets()[n]
        assert changed(w[d], saved[d])  # the average is not the last weights
        for k, v in snapshot(saved[d]).items():
            torch.testing.assert_close(v, expected[d][k], rtol=1e-5, atol=1e-6)
    # The sample grid's output column comes from the average.
    b = batch(seed=9)
    sampled = m.samples(b)[1]
    with torch.no_grad():
        torch.testing.assert_close(sampled, saved["AtoB"].eval()(b["A"]).float())
    # Off (the default): the nets themselves are saved.
    off = build_method(load_config(preset, [*TINY]), CPU, FP32, 10, 5)
    assert all(off.generators()[d] is off.nets()[n] for d, n in names.items())


def test_image_pool_fills_then_swaps_half_the_time():
    pool = ImagePool(size=4, seed=0)
    imgs = [torch.full((1, 1, 2, 2), float(i)) for i in range(2000)]
    for i in range(4):
        assert torch.equal(pool.query(imgs[i]), imgs[i])  # filling: the newest comes back
    returned_old = sum(not torch.equal(pool.query(imgs[i]), imgs[i]) for i in range(4, 2000))
    assert abs(returned_old / 1996 - 0.5) < 0.05  # p = 1/2 of an older image
    # Exact resume: the pool's state restores its images and its random stream.
    state = pool.state_dict()
    other = ImagePool(size=4, seed=123)
    other.load_state_dict(state, CPU)
    assert all(torch.equal(pool.query(x), other.query(x)) for x in imgs[:50])
    assert ImagePool(0, 0).query(imgs[7]) is imgs[7]


def test_batch_norm_recalibration_matches_the_statistics_of_the_data():
    from img2img.nets.generators import UnetGenerator

    torch.manual_seed(0)
    net = UnetGenerator(3, 3, num_downs=4, ngf=4, norm="batch", dropout=0.5)
    data = [torch.randn(8, 3, 32, 32) * 0.5 + 0.2 for _ in range(3)]
    seen = recalibrate_batch_norm(net, data, FP32)
    assert seen == 24 and net.training  # mode restored
    first_bn = net.downs[1][2]
    # The first BN sees conv(LeakyReLU(conv(x))): its running mean is the mean over all 24 images.
    with torch.no_grad():
        hs = [net.downs[1][1](net.downs[1][0](net.downs[0](x))) for x in data]
    assert torch.allclose(first_bn.running_mean, torch.cat(hs).mean((0, 2, 3)), atol=1e-6)
    # Cumulative average of each batch's (unbiased) variance, as update_bn gives.
    assert torch.allclose(first_bn.running_var, torch.stack([h.var((0, 2, 3)) for h in hs]).mean(0), rtol=1e-4)
    assert first_bn.momentum == 0.1


def test_cpu_bf16_only_where_native():
    assert choose_amp("auto", CPU, cpu_bf16=None).dtype is None
    assert choose_amp("auto", CPU, cpu_bf16="amx").dtype is torch.bfloat16
    assert choose_amp("off", CPU, cpu_bf16="amx").dtype is None
    with pytest.raises(Img2ImgError, match="no native bf16"):
        choose_amp("bf16", CPU, cpu_bf16=None)
    with pytest.raises(Img2ImgError, match="CUDA"):
        choose_amp("fp16", CPU, cpu_bf16="amx")


def test_pix2pix_colour_rebalancing_keeps_its_prior_in_the_state():
    """loss.chroma_rebalance: the running colour prior follows the batches and survives a
    state_dict round trip (exact resume); it needs the chroma reconstruction term."""
    extra = ["loss.l1_space=chroma", "loss.chroma_rebalance=true", "model.input_nc=1", "data.kind=colorization"]
    m = pix2pix(extra)
    b = batch(channels_a=1)
    uniform = m.colour_prior.clone()
    stats = m.g_step(b["A"], b["B"], m.G(b["A"]), 0.0)
    assert stats["L1"] > 0 and not torch.equal(m.colour_prior, uniform)
    assert m.colour_prior.sum().item() == pytest.approx(1.0)
    fresh = pix2pix(extra)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.colour_prior, m.colour_prior) and fresh.prior_batches == 1
    with pytest.raises(Img2ImgError, match="loss.l1_space=chroma"):
        load_config("pix2pix", [*TINY, "loss.chroma_rebalance=true"])
