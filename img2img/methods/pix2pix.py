"""pix2pix (Isola et al. 2017): conditional GAN on aligned pairs, G: A -> B.

D judges the pair (A, B) against (A, G(A)); G minimizes adversarial + lambda_L1 * |G(A) - B|
(optionally on chroma only), + lambda_fm * D feature matching + lambda_perceptual * VGG features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from img2img.config import RunConfig
from img2img.losses import (
    CHROMA_BINS, chroma_histogram, chroma_l1_loss, feature_matching_loss, gradient_penalty, l1_loss, perceptual_loss,
    r1_penalty, rebalanced_chroma_l1_loss, rebalancing_weights,
)  # fmt: skip
from img2img.methods.base import STAT_G_GRAD, Batch
from img2img.methods.common import (
    Amp, Wrap, adversarial, batch_diversity, build_discriminator, d_inputs, grad_norm, identity, make_players,
    set_requires_grad, split_halves, step_optimizer, unwrap,
)  # fmt: skip
from img2img.nets import MultiScaleDiscriminator
from img2img.nets.generators import generator_to_train

PRIOR_HORIZON = 1000  # batches the running colour prior of loss.chroma_rebalance averages over


class Pix2Pix:
    d_loss_keys = ("D",)

    def __init__(self, G: nn.Module, D: nn.Module, cfg: RunConfig, amp: Amp, total_steps: int, decay_start: int,
                 perceptual: nn.Module | None = None):
        """G, D: built (and wrapped, e.g. in DDP) by the caller; perceptual: the VGG feature net
        when loss.lambda_perceptual > 0."""
        self.cfg, self.amp, self.adv = cfg, amp, adversarial(cfg)
        self.G, self.D, self.perceptual = G, D, perceptual
        self.spec = unwrap(G).spec
        self.players = make_players(cfg, {"G": G, "D": D}, {"G": ["G"], "D": ["D"]}, amp, total_steps, decay_start)
        self.reconstruction = chroma_l1_loss if cfg.loss.l1_space == "chroma" else l1_loss
        # loss.chroma_rebalance: the training targets' colour distribution, a running mean over
        # the batches seen (cumulative, then exponential over the last ~PRIOR_HORIZON batches);
        # part of the resumable state.
        device = next(unwrap(G).parameters()).device
        self.colour_prior = torch.full((CHROMA_BINS**2,), 1.0 / CHROMA_BINS**2, device=device)
        self.prior_batches = 0

    @classmethod
    def from_config(cls, cfg: RunConfig, device: torch.device, amp: Amp, total_steps: int, decay_start: int,
                    wrap: Wrap = identity, seed: int = 0, G: nn.Module | None = None) -> "Pix2Pix":
        """Build the nets the config describes (G may be given instead: e.g. an ablation's variant)."""
        m = cfg.model
        G = G if G is not None else generator_to_train(m.generator_spec())
        D = build_discriminator(m, m.input_nc + m.output_nc)
        perceptual = None
        if cfg.loss.lambda_perceptual > 0:
            from img2img.nets.vgg import VGGFeatures

            perceptual = VGGFeatures().to(device)
        return cls(wrap(G.to(device)), wrap(D.to(device)), cfg, amp, total_steps, decay_start, perceptual)

    def train_step(self, batch: Batch, noise: float) -> dict[str, float]:
        a, b = batch["A"], batch["B"]
        with self.amp.autocast():
            fake = self.G(a)
        stats = self.d_step(a, b, fake.detach(), noise)
        stats.update(self.g_step(a, b, fake, noise))
        return stats

    def pair_inputs(self, a: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        """D's real and fake inputs: the pairs (A, B) and (A, G(A)), each pair augmented as one
        image."""
        return d_inputs(torch.cat([a, real], 1), torch.cat([a, fake], 1), self.cfg, noise)

    def d_step(self, a: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, noise: float) -> dict[str, float]:
        """Update D on (A, B) as real and (A, G(A)) as fake."""
        cfg = self.cfg.loss
        real_in, fake_in = self.pair_inputs(a, real, fake, noise)
        with self.amp.autocast():
            outs = self.D(torch.cat([real_in, fake_in]))
        loss = sum(self.adv.d(r, f, 1.0 - cfg.label_smoothing) for r, f in split_halves(outs))
        stats = {"D": loss.item()}
        if self.adv.gradient_penalty:
            gp = gradient_penalty(unwrap(self.D), real_in.float(), fake_in.float())
            loss = loss + cfg.lambda_gp * gp
            stats["GP"] = gp.item()
        if cfg.r1_gamma > 0:
            r1 = r1_penalty(unwrap(self.D), real_in.float())
            loss = loss + cfg.r1_gamma / 2 * r1
            stats["R1"] = r1.item()
        step_optimizer(loss, self.players.optimizers["D"], self.players.scalers["D"])
        return stats

    def g_step(self, a: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, noise: float) -> dict[str, float]:
        """Update G: fool D (D frozen), stay close to B (L1), and match D's and VGG's features."""
        cfg = self.cfg.loss
        D: MultiScaleDiscriminator = unwrap(self.D)  # no DDP sync: D is not updated here
        set_requires_grad(D, False)
        real_in, fake_in = self.pair_inputs(a, real, fake, noise)
        with self.amp.autocast():
            feats = D.features(torch.cat([real_in, fake_in]))  # per scale: hidden layers..., logits
        halves = [[t.chunk(2, dim=0) for t in scale] for scale in feats]
        adv = sum(self.adv.g(logits[0].float(), logits[1].float()) for logits in (scale[-1] for scale in halves))
        if cfg.chroma_rebalance:
            rec = rebalanced_chroma_l1_loss(fake.float(), real, rebalancing_weights(self.update_colour_prior(real)))
        else:
            rec = self.reconstruction(fake.float(), real)
        loss = adv + cfg.lambda_l1 * rec
        stats = {"G": adv.item(), "L1": rec.item()}
        if cfg.lambda_fm > 0:
            fm = feature_matching_loss([[h[0] for h in s[:-1]] for s in halves], [[h[1] for h in s[:-1]] for s in halves])
            loss = loss + cfg.lambda_fm * fm
            stats["FM"] = fm.item()
        if self.perceptual is not None:
            with self.amp.autocast():
                vgg_fake = self.perceptual(fake)
                with torch.no_grad():
                    vgg_real = self.perceptual(real)
            vgg = perceptual_loss(vgg_real, vgg_fake)
            loss = loss + cfg.lambda_perceptual * vgg
            stats["VGG"] = vgg.item()
        step_optimizer(loss, self.players.optimizers["G"], self.players.scalers["G"])
        self.players.update_averages()
        set_requires_grad(D, True)
        return {**stats, STAT_G_GRAD: grad_norm(self.G), **batch_diversity(fake, real)}

    @torch.no_grad()
    def update_colour_prior(self, real: torch.Tensor) -> torch.Tensor:
        """Fold this batch's colour histogram (summed over DDP ranks, so every rank keeps the same
        prior) into the running prior and return it."""
        hist = chroma_histogram(real)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(hist)
            hist /= dist.get_world_size()
        self.prior_batches += 1
        rate = 1.0 / min(self.prior_batches, PRIOR_HORIZON)
        self.colour_prior.mul_(1 - rate).add_(hist, alpha=rate)
        return self.colour_prior

    def step_schedules(self) -> None:
        self.players.step_schedules()

    def learning_rate(self) -> float:
        return self.players.lr("G")

    @torch.no_grad()
    def samples(self, batch: Batch) -> list[torch.Tensor]:
        """Columns of the sample grid: input | output | target."""
        G = self.players.saved("G")
        G.eval()
        out = G(batch["A"]).float()
        G.train()
        return [batch["A"], out, batch["B"]]

    def generators(self) -> dict[str, nn.Module]:
        return {"AtoB": self.players.saved("G")}

    def nets(self) -> dict[str, nn.Module]:
        return {"G": unwrap(self.G), "D": unwrap(self.D)}

    def state_dict(self) -> dict[str, Any]:
        return {**self.players.state_dict(), "colour_prior": self.colour_prior.clone(), "prior_batches": self.prior_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.players.load_state_dict(state)
        if "colour_prior" in state:  # checkpoints from before loss.chroma_rebalance have none
            self.colour_prior.copy_(state["colour_prior"])
            self.prior_batches = int(state["prior_batches"])
