"""pix2pix (Isola et al. 2017): conditional GAN on aligned pairs, G: A -> B.

D judges the pair (A, B) against (A, G(A)); G minimizes adversarial + lambda_L1 * |G(A) - B|.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from img2img.checkpoint import generator_spec
from img2img.config import RunConfig
from img2img.losses import gradient_penalty, instance_noise, l1_loss
from img2img.methods.common import (
    Amp, adversarial, batch_diversity, grad_norm, make_players, set_requires_grad, split_halves, step_optimizer, unwrap,
)
from img2img.nets import MultiScaleDiscriminator, build_generator


class Pix2Pix:
    generator_files = {"G": "G_AtoB.safetensors"}

    def __init__(self, cfg: RunConfig, device: torch.device, amp: Amp, total_steps: int, decay_start: int,
                 wrap: Callable[[nn.Module], nn.Module] = lambda m: m, seed: int = 0):
        m = cfg.model
        self.cfg, self.amp, self.adv = cfg, amp, adversarial(cfg)
        self.spec = generator_spec(cfg, m.input_nc, m.output_nc)
        G = build_generator(self.spec["arch"], **self.spec["kwargs"])
        D = MultiScaleDiscriminator(m.input_nc + m.output_nc, m.ndf, m.n_layers_d, m.norm_d, m.spectral_norm, m.num_scales_d)
        self.G, self.D = (wrap(net.to(device)) for net in (G, D))
        self.players = make_players(
            cfg, {"G": self.G, "D": self.D}, {"G": ["G"], "D": ["D"]},
            {"G": cfg.train.lr_g, "D": cfg.train.lr_d}, amp, total_steps, decay_start,
        )

    def train_step(self, batch: dict[str, torch.Tensor], noise: float) -> dict[str, float]:
        a, b = batch["A"], batch["B"]
        with self.amp.autocast():
            fake = self.G(a)
        stats = self.d_step(a, b, fake.detach(), noise)
        stats.update(self.g_step(a, b, fake, noise))
        return stats

    def d_step(self, a: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, noise: float) -> dict[str, float]:
        """Update D on (A, B) as real and (A, G(A)) as fake."""
        cfg = self.cfg.loss
        real_in = instance_noise(torch.cat([a, real], 1), noise)
        fake_in = instance_noise(torch.cat([a, fake], 1), noise)
        with self.amp.autocast():
            outs = self.D(torch.cat([real_in, fake_in]))
        loss = sum(self.adv.d(r, f, 1.0 - cfg.label_smoothing) for r, f in split_halves(outs))
        stats = {"D": loss.item()}
        if self.adv.gradient_penalty:
            gp = gradient_penalty(unwrap(self.D), real_in.float(), fake_in.float())
            loss = loss + cfg.lambda_gp * gp
            stats["GP"] = gp.item()
        step_optimizer(loss, self.players.optimizers["D"], self.players.scalers["D"])
        return stats

    def g_step(self, a: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, noise: float) -> dict[str, float]:
        """Update G: fool D (D frozen) and stay close to B in L1."""
        cfg = self.cfg.loss
        D = unwrap(self.D)  # no DDP sync: D is not updated here
        set_requires_grad(D, False)
        real_in = instance_noise(torch.cat([a, real], 1), noise)
        fake_in = instance_noise(torch.cat([a, fake], 1), noise)
        with self.amp.autocast():
            outs = D(torch.cat([real_in, fake_in]))
        adv = sum(self.adv.g(r, f) for r, f in split_halves(outs))
        l1 = l1_loss(fake.float(), real)
        step_optimizer(adv + cfg.lambda_l1 * l1, self.players.optimizers["G"], self.players.scalers["G"])
        set_requires_grad(D, True)
        return {"G": adv.item(), "L1": l1.item(), "G_grad": grad_norm(self.G), **batch_diversity(fake, real)}

    @torch.no_grad()
    def samples(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Rows of the sample grid: input | output | target."""
        G = unwrap(self.G)
        G.eval()
        out = G(batch["A"]).float()
        G.train()
        return [batch["A"], out, batch["B"]]

    def generators(self) -> dict[str, nn.Module]:
        return {"G": unwrap(self.G)}

    def state_dict(self) -> dict[str, Any]:
        return self.players.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.players.load_state_dict(state)
