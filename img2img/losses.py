"""Losses as pure functions of tensors. Weights (lambda_*) are applied in the training steps.

Adversarial losses take the critic's raw outputs (logits) C(x) on real and fake samples.
Expectations E[.] are means over the batch *and* over PatchGAN locations: every patch is one
sample of the critic, which keeps relativistic losses meaningful at batch size 1.
Multi-scale discriminators call these once per scale; the steps sum the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from img2img.metrics import CBCR  # BT.601 chroma rows, one home

Tensor = torch.Tensor


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


# --- standard (absolute) losses -----------------------------------------------------------

def vanilla_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """Non-saturating GAN, D side (Goodfellow et al. 2014): -E[log D(x_r)] - E[log(1 - D(x_f))].
    real_label < 1 is one-sided label smoothing (Salimans et al. 2016)."""
    return _bce(real, real_label) + _bce(fake, 0.0)


def vanilla_g(real: Tensor, fake: Tensor) -> Tensor:
    """Non-saturating GAN, G side (Goodfellow et al. 2014): -E[log D(x_f)]. `real` is unused."""
    return _bce(fake, 1.0)


def lsgan_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """Least-squares GAN, D side (Mao et al. 2017): E[(C(x_r) - 1)^2] + E[C(x_f)^2]."""
    return ((real - real_label) ** 2).mean() + (fake**2).mean()


def lsgan_g(real: Tensor, fake: Tensor) -> Tensor:
    """Least-squares GAN, G side (Mao et al. 2017): E[(C(x_f) - 1)^2]. `real` is unused."""
    return ((fake - 1) ** 2).mean()


def hinge_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """Hinge loss, D side (Lim & Ye 2017; Miyato et al. 2018): E[relu(1 - C(x_r))] + E[relu(1 + C(x_f))].
    Label smoothing does not apply to a margin loss; real_label is accepted and ignored."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(real: Tensor, fake: Tensor) -> Tensor:
    """Hinge loss, G side (Lim & Ye 2017): -E[C(x_f)]. `real` is unused."""
    return -fake.mean()


def wgan_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """Wasserstein critic loss (Arjovsky et al. 2017): E[C(x_f)] - E[C(x_r)]. Pair it with
    gradient_penalty (Gulrajani et al. 2017). real_label is ignored."""
    return fake.mean() - real.mean()


def wgan_g(real: Tensor, fake: Tensor) -> Tensor:
    """Wasserstein generator loss (Arjovsky et al. 2017): -E[C(x_f)]. `real` is unused."""
    return -fake.mean()


# --- relativistic average losses (Jolicoeur-Martineau 2018, arXiv:1807.00734) -------------
# With C the critic, the relativistic average discriminator is
#   D_Ra(x_r, x_f) = sigma(C(x_r) - E[C(x_f)]):  "is real more realistic than the average fake?"
# G's loss is D's with real and fake swapped, so G also gets gradient through C(x_r) - E C(x_f).

def rasgan_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """RaSGAN, D side: -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))]."""
    return _bce(real - fake.mean(), real_label) + _bce(fake - real.mean(), 0.0)


def rasgan_g(real: Tensor, fake: Tensor) -> Tensor:
    """RaSGAN, G side: -E[log D_Ra(x_f, x_r)] - E[log(1 - D_Ra(x_r, x_f))]."""
    return _bce(fake - real.mean(), 1.0) + _bce(real - fake.mean(), 0.0)


def ralsgan_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """RaLSGAN, D side: E[(C(x_r) - E C(x_f) - 1)^2] + E[(C(x_f) - E C(x_r) + 1)^2]."""
    return ((real - fake.mean() - real_label) ** 2).mean() + ((fake - real.mean() + 1) ** 2).mean()


def ralsgan_g(real: Tensor, fake: Tensor) -> Tensor:
    """RaLSGAN, G side: E[(C(x_f) - E C(x_r) - 1)^2] + E[(C(x_r) - E C(x_f) + 1)^2]."""
    return ((fake - real.mean() - 1) ** 2).mean() + ((real - fake.mean() + 1) ** 2).mean()


def rahinge_d(real: Tensor, fake: Tensor, real_label: float = 1.0) -> Tensor:
    """RaHinge, D side: E[relu(1 - (C(x_r) - E C(x_f)))] + E[relu(1 + (C(x_f) - E C(x_r)))]."""
    return F.relu(1 - (real - fake.mean())).mean() + F.relu(1 + (fake - real.mean())).mean()


def rahinge_g(real: Tensor, fake: Tensor) -> Tensor:
    """RaHinge, G side: E[relu(1 - (C(x_f) - E C(x_r)))] + E[relu(1 + (C(x_r) - E C(x_f)))]."""
    return F.relu(1 - (fake - real.mean())).mean() + F.relu(1 + (real - fake.mean())).mean()


@dataclass(frozen=True)
class AdversarialLoss:
    d: Callable[..., Tensor]  # (real_logits, fake_logits, real_label=1.0) -> scalar
    g: Callable[[Tensor, Tensor], Tensor]  # (real_logits, fake_logits) -> scalar
    gradient_penalty: bool = False  # WGAN-GP adds gradient_penalty to the D loss


ADVERSARIAL_LOSSES: dict[str, AdversarialLoss] = {
    "rasgan": AdversarialLoss(rasgan_d, rasgan_g),
    "ralsgan": AdversarialLoss(ralsgan_d, ralsgan_g),
    "rahinge": AdversarialLoss(rahinge_d, rahinge_g),
    "vanilla": AdversarialLoss(vanilla_d, vanilla_g),
    "lsgan": AdversarialLoss(lsgan_d, lsgan_g),
    "hinge": AdversarialLoss(hinge_d, hinge_g),
    "wgan-gp": AdversarialLoss(wgan_d, wgan_g, gradient_penalty=True),
}


def gradient_penalty(critic: Callable[[Tensor], list[Tensor]], real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x C(x_hat)||_2 - 1)^2] at
    x_hat = eps * x_r + (1 - eps) * x_f, eps ~ U(0, 1) per sample. Summed over critic scales."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    outs = critic(x_hat)
    grads = torch.autograd.grad([o.sum() for o in outs], x_hat, create_graph=True)[0]
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Callable[[Tensor], list[Tensor]], real: Tensor) -> Tensor:
    """R1 (Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do actually
    Converge?", eq. 9): E[||grad_x D(x)||_2^2] at the real inputs x, summed over critic scales.
    Added to D's loss as gamma/2 times this, it keeps D flat on the data, so that D cannot
    sharpen into a memorizer of few photos (StyleGAN2-ADA keeps it on for small data sets)."""
    x = real.detach().requires_grad_(True)
    outs = critic(x)
    grads = torch.autograd.grad([o.sum() for o in outs], x, create_graph=True)[0]
    return grads.pow(2).flatten(1).sum(1).mean()


# --- reconstruction losses -----------------------------------------------------------------

def l1_loss(output: Tensor, target: Tensor) -> Tensor:
    """E|output - target|, pix2pix's conditional term (Isola et al. 2017)."""
    return (output - target).abs().mean()


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Cycle consistency E|F(G(x)) - x| (Zhu et al. 2017, eq. 2)."""
    return (reconstructed - original).abs().mean()


def identity_loss(same: Tensor, original: Tensor) -> Tensor:
    """Identity mapping E|G(y) - y| (Taigman et al. 2017; CycleGAN §5.2) keeps colours stable."""
    return (same - original).abs().mean()


# Chroma (metrics.CBCR, BT.601) is linear in RGB, so the offset of the [-1, 1] scaling cancels in differences.


def chroma_l1_loss(output: Tensor, target: Tensor) -> Tensor:
    """E|Cb(output) - Cb(target)| + E|Cr(output) - Cr(target)| / 2 over RGB images: the
    reconstruction term on colour alone, luma ignored. For colorization, whose output luma is
    replaced by the input's at inference (Zhang et al. 2016 likewise predict chroma given L)."""
    return chroma(output - target).abs().mean()


# Colour rebalancing (Zhang, Isola & Efros 2016, "Colorful Image Colorization", sec. 2.2): pixels
# are weighted by the rarity of their true colour, w ∝ 1 / ((1 - λ) p̃ + λ / Q), with p̃ the
# smoothed empirical distribution over Q colour bins and λ = 1/2; E_p̃[w] = 1. Without it the
# reconstruction term is dominated by common, desaturated colours (sky, walls, grey) and pulls
# every ambiguous region towards them: the washed-out look.
CHROMA_BINS = 20        # per axis over Cb, Cr in [-1, 1] (RGB in [-1, 1]): bins of 12.75 of 255
REBALANCE_MIX = 0.5     # λ, the paper's
REBALANCE_SIGMA = 0.5   # Gaussian smoothing of p, in bins (the paper's 5 ab units over bins of 10)


def chroma(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 2, H, W) BT.601 Cb, Cr (in [-1, 1] for RGB in [-1, 1])."""
    return torch.einsum("kc,nchw->nkhw", torch.as_tensor(CBCR, dtype=x.dtype, device=x.device), x)


def chroma_bins(x: Tensor) -> Tensor:
    """(N, H, W) flat index of each pixel's (Cb, Cr) bin in a CHROMA_BINS² grid."""
    idx = ((chroma(x.float()) + 1) / 2 * CHROMA_BINS).long().clamp_(0, CHROMA_BINS - 1)
    return idx[:, 0] * CHROMA_BINS + idx[:, 1]


def chroma_histogram(x: Tensor) -> Tensor:
    """Share of the pixels of RGB images x in each (Cb, Cr) bin: a CHROMA_BINS² vector summing to 1."""
    counts = torch.bincount(chroma_bins(x).flatten(), minlength=CHROMA_BINS**2).float()
    return counts / counts.sum()


def rebalancing_weights(p: Tensor) -> Tensor:
    """Per-bin weights w = 1 / ((1 - λ) p̃ + λ / Q), scaled so that E_p̃[w] = 1 (Zhang et al. 2016,
    eq. 4), from a colour distribution p over the CHROMA_BINS² grid; p̃ is p smoothed."""
    r = int(3 * REBALANCE_SIGMA + 1)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=p.dtype, device=p.device) ** 2) / (2 * REBALANCE_SIGMA**2))
    k = k / k.sum()
    grid = p.reshape(1, 1, CHROMA_BINS, CHROMA_BINS)
    grid = F.conv2d(F.conv2d(grid, k.view(1, 1, -1, 1), padding=(r, 0)), k.view(1, 1, 1, -1), padding=(0, r))
    smooth = grid.flatten() / grid.sum()
    w = 1.0 / ((1 - REBALANCE_MIX) * smooth + REBALANCE_MIX / smooth.numel())
    return w / (smooth * w).sum()


def rebalanced_chroma_l1_loss(output: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """chroma_l1_loss with each pixel weighted by weights[bin of its target colour]
    (rebalancing_weights; Zhang et al. 2016, eq. 4, on an L1 regression instead of their
    classification). Uniform weights give chroma_l1_loss exactly."""
    w = weights[chroma_bins(target)].to(output.dtype)  # (N, H, W)
    return (w[:, None] * chroma(output - target).abs()).mean()


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """Discriminator feature matching (Wang et al. 2018, pix2pixHD, eq. 4): for each scale k and
    each hidden layer i of D_k, E|D_k^(i)(x_real) - D_k^(i)(x_fake)|, summed over layers and
    averaged over scales. real's features are targets (detached). The lists hold, per scale,
    the hidden layers' activations (without the final patch logits)."""
    total = torch.zeros((), device=fake[0][0].device)
    for real_k, fake_k in zip(real, fake):
        for r, f in zip(real_k, fake_k):
            total = total + (r.detach().float() - f.float()).abs().mean()
    return total / len(fake)


def perceptual_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Feature reconstruction loss (Johnson et al. 2016): sum over VGG layers of
    E|phi_i(x_real) - phi_i(x_fake)| (L1, as pix2pixHD's VGG loss), real's features detached."""
    total = torch.zeros((), device=fake[0].device)
    for r, f in zip(real, fake):
        total = total + (r.detach().float() - f.float()).abs().mean()
    return total


# --- regularizers on D's inputs -------------------------------------------------------------

def instance_noise(x: Tensor, sigma: float) -> Tensor:
    """x + N(0, sigma^2) (Sønderby et al. 2017; Arjovsky & Bottou 2017): overlaps the real and
    fake distributions so D's gradients stay informative. sigma=0 returns x unchanged."""
    if sigma <= 0:
        return x
    return x + sigma * torch.randn_like(x)


def diff_augment(real: Tensor, fake: Tensor, policy: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020): with few
    training images D memorizes them and its loss goes to 0; translating and cutting out both
    its real and its fake inputs, differentiably so G's gradient passes through, takes that away
    without changing what G should produce. "translation": shift by up to 1/8 of the size, zero
    filled; "cutout": zero a square of half the size at a random centre (the paper's ratios).
    Colour is not augmented: a colorization D must judge colour. real[i] and fake[i] get the
    same transform, so D feature matching still compares like with like."""
    n, _, h, w = real.shape
    device = real.device
    ys, xs = torch.arange(h, device=device).view(1, h, 1), torch.arange(w, device=device).view(1, 1, w)
    for name in policy:
        if name == "translation":
            dy = torch.randint(-(h // 8), h // 8 + 1, (n, 1, 1), device=device)
            dx = torch.randint(-(w // 8), w // 8 + 1, (n, 1, 1), device=device)
            sy, sx = ys - dy, xs - dx  # out(y, x) = in(y - dy, x - dx)
            keep = ((sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)).unsqueeze(1)
            batch = torch.arange(n, device=device).view(n, 1, 1)
            sy, sx = sy.clamp(0, h - 1), sx.clamp(0, w - 1)
            real, fake = ((t.permute(0, 2, 3, 1)[batch, sy, sx].permute(0, 3, 1, 2) * keep) for t in (real, fake))
        elif name == "cutout":
            cy = torch.randint(0, h, (n, 1, 1), device=device)
            cx = torch.randint(0, w, (n, 1, 1), device=device)
            top, left = cy - h // 4, cx - w // 4  # an (h/2 x w/2) square centred on (cy, cx), clipped
            inside = (ys >= top) & (ys < top + h // 2) & (xs >= left) & (xs < left + w // 2)
            keep = (~inside).unsqueeze(1)
            real, fake = real * keep, fake * keep
        else:
            raise ValueError(f"unknown D augmentation {name!r}")  # the config lists the valid ones
    return real, fake
