import math

import pytest
import torch

from img2img import losses as L

real = torch.tensor([[2.0, 0.5], [1.0, -1.0]])
fake = torch.tensor([[-1.0, 0.0], [0.5, -2.0]])
mr, mf = real.mean().item(), fake.mean().item()  # 0.625, -0.625


def softplus(x):
    return math.log1p(math.exp(x))


def mean(f, t):
    return sum(f(v) for v in t.flatten().tolist()) / t.numel()


# -log(sigmoid(x)) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
HAND = {
    "vanilla_d": mean(lambda v: softplus(-v), real) + mean(softplus, fake),
    "vanilla_g": mean(lambda v: softplus(-v), fake),
    "lsgan_d": mean(lambda v: (v - 1) ** 2, real) + mean(lambda v: v**2, fake),
    "lsgan_g": mean(lambda v: (v - 1) ** 2, fake),
    "hinge_d": mean(lambda v: max(0, 1 - v), real) + mean(lambda v: max(0, 1 + v), fake),
    "hinge_g": -mf,
    "wgan_d": mf - mr,
    "wgan_g": -mf,
    "rasgan_d": mean(lambda v: softplus(-(v - mf)), real) + mean(lambda v: softplus(v - mr), fake),
    "rasgan_g": mean(lambda v: softplus(-(v - mr)), fake) + mean(lambda v: softplus(v - mf), real),
    "ralsgan_d": mean(lambda v: (v - mf - 1) ** 2, real) + mean(lambda v: (v - mr + 1) ** 2, fake),
    "ralsgan_g": mean(lambda v: (v - mr - 1) ** 2, fake) + mean(lambda v: (v - mf + 1) ** 2, real),
    "rahinge_d": mean(lambda v: max(0, 1 - (v - mf)), real) + mean(lambda v: max(0, 1 + (v - mr)), fake),
    "rahinge_g": mean(lambda v: max(0, 1 - (v - mr)), fake) + mean(lambda v: max(0, 1 + (v - mf)), real),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_loss_matches_hand_computation(name):
    assert getattr(L, name)(real, fake).item() == pytest.approx(HAND[name], rel=1e-6)


@pytest.mark.parametrize("gan", sorted(L.ADVERSARIAL_LOSSES))
def test_gradients_point_the_right_way(gan):
    """At a confused critic (reals scored below fakes), D's loss falls as real scores rise and fake
    scores fall, and G's loss falls as fake scores rise."""
    loss = L.ADVERSARIAL_LOSSES[gan]
    confused_real, confused_fake = torch.tensor([[-0.3, -0.1], [-0.2, -0.4]]), torch.tensor([[0.2, 0.1], [0.3, 0.15]])
    r, f = confused_real.clone().requires_grad_(), confused_fake.clone().requires_grad_()
    loss.d(r, f).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()
    f2 = confused_fake.clone().requires_grad_()
    loss.g(confused_real, f2).backward()
    assert (f2.grad < 0).all()


def test_relativistic_g_loss_uses_real_scores():
    f = fake.clone()
    assert L.rasgan_g(real, f) != L.rasgan_g(real + 1, f)
    assert L.lsgan_g(real, f) == L.lsgan_g(real + 1, f)


def test_one_sided_label_smoothing_moves_the_real_target():
    assert L.lsgan_d(real, fake, real_label=0.9).item() == pytest.approx(
        mean(lambda v: (v - 0.9) ** 2, real) + mean(lambda v: v**2, fake), rel=1e-6)
    assert L.vanilla_d(real, fake, 0.9).item() == pytest.approx(
        mean(lambda v: -(0.9 * math.log(1 / (1 + math.exp(-v))) + 0.1 * math.log(1 - 1 / (1 + math.exp(-v)))), real)
        + mean(softplus, fake), rel=1e-6)


def test_gradient_penalty_of_a_linear_critic():
    """C(x) = <w, x> has gradient w everywhere, so the penalty is (||w|| - 1)^2."""
    w = torch.tensor([[[[3.0, 4.0]]]])  # ||w|| = 5
    critic = lambda x: [(x * w).sum((1, 2, 3))]  # noqa: E731
    gp = L.gradient_penalty(critic, torch.randn(4, 1, 1, 2), torch.randn(4, 1, 1, 2))
    assert gp.item() == pytest.approx(16.0)


def test_r1_penalty_of_a_quadratic_critic_and_it_trains_d():
    """C(x) = sum(x^2) / 2 has gradient x, so R1 = E||x||^2; and R1's gradient reaches D's
    weights (it is part of D's loss, not a number beside it)."""
    x = torch.randn(4, 2, 3, 3)
    critic = lambda t: [0.5 * t.pow(2).sum((1, 2, 3))]  # noqa: E731
    assert L.r1_penalty(critic, x).item() == pytest.approx(x.pow(2).sum((1, 2, 3)).mean().item(), rel=1e-5)
    d = torch.nn.Conv2d(2, 1, 3)
    L.r1_penalty(lambda t: [d(t)], x).backward()
    assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_reconstruction_losses():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert L.l1_loss(a, b).item() == pytest.approx(0.5)
    assert L.cycle_loss(b, a).item() == pytest.approx(0.5)
    assert L.identity_loss(a, a).item() == 0.0


def test_instance_noise():
    x = torch.zeros(20000)
    assert torch.equal(L.instance_noise(x, 0.0), x)
    assert L.instance_noise(x, 0.1).std().item() == pytest.approx(0.1, rel=0.05)


def test_colour_rebalancing_on_a_real_photo():
    """Zhang et al. 2016's rebalancing on the astronaut photo: uniform weights give the plain
    chroma L1; rarer colours weigh more, the weights average 1 under the smoothed distribution,
    and an error on the rare orange suit costs more than the same error on common colours."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()[::4, ::4].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    out = img.flip(-1)
    assert L.rebalanced_chroma_l1_loss(out, img, torch.ones(L.CHROMA_BINS**2)).item() == pytest.approx(
        L.chroma_l1_loss(out, img).item(), rel=1e-6)
    p = L.chroma_histogram(img)
    assert p.sum().item() == pytest.approx(1.0) and (p > 0).sum() > 5
    w = L.rebalancing_weights(p)
    common, rare = p.argmax(), torch.where(p > 0, p, 2.0).argmin()  # most and least frequent colours present
    assert w[rare] > 1.5 * w[common]
    assert 0.5 < (w * p).sum().item() < 1.5  # ~1: E over the smoothed distribution is exactly 1
    bins = L.chroma_bins(img)[0]
    shift = torch.tensor([0.1, -0.1, 0.1]).view(1, 3, 1, 1)  # a chroma error, same size everywhere
    costs = []
    for mask in (bins == common, bins == rare):
        wrong = torch.where(mask, img + shift, img)
        costs.append(L.rebalanced_chroma_l1_loss(wrong, img, w).item() / L.chroma_l1_loss(wrong, img).item())
    assert costs[1] > 1.5 * costs[0]


def _photo_batch(n: int = 6, size: int = 32) -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.astronaut()[::16, ::16].copy()).permute(2, 0, 1).float() / 127.5 - 1
    return img[None, :, :size, :size].repeat(n, 1, 1, 1)


def test_diff_augment_translation_shifts_real_and_fake_alike():
    """Each image moves by its own (dy, dx) within 1/8 of the size, zero filled; the fake of the
    same index moves with it; gradients reach the fake through the shift."""
    torch.manual_seed(0)
    real = _photo_batch()
    fake = (0.5 * real).requires_grad_()
    assert L.diff_augment(real, fake, [])[0] is real
    out_r, out_f = L.diff_augment(real, fake, ["translation"])
    torch.testing.assert_close(out_f, 0.5 * out_r)
    shifts = set()
    for i in range(len(real)):
        padded = torch.nn.functional.pad(real[i], (4, 4, 4, 4))  # shifts up to 32 // 8 = 4
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.equal(out_r[i], padded[:, 4 - dy:36 - dy, 4 - dx:36 - dx])]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 1  # drawn per image
    out_f.sum().backward()
    assert 0 < (fake.grad != 0).float().mean() < 1  # the pixels shifted out get no gradient


def test_diff_augment_cutout_zeroes_one_half_size_square():
    torch.manual_seed(1)
    real = _photo_batch()
    out_r, out_f = L.diff_augment(real, 0.5 * real, ["cutout"])
    torch.testing.assert_close(out_f, 0.5 * out_r)
    for i in range(len(real)):
        cut = (out_r[i] != real[i]).any(0)
        assert torch.all(out_r[i][:, cut] == 0) and torch.equal(out_r[i][:, ~cut], real[i][:, ~cut])
        rows, cols = cut.any(1).nonzero(), cut.any(0).nonzero()
        h, w = len(rows), len(cols)
        assert 0 < h <= 16 and 0 < w <= 16 and cut.sum() == h * w  # a rectangle, clipped at the border
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
