"""CycleGAN (Zhu et al. 2017): two generators G_AB: A -> B and G_BA: B -> A trained on unpaired
images, each against a discriminator of its output domain, tied by cycle consistency
|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b| and (optionally) identity |G_AB(b) - b| + |G_BA(a) - a|.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from img2img.config import RunConfig
from img2img.losses import cycle_loss, gradient_penalty, identity_loss, r1_penalty
from img2img.methods.base import STAT_G_GRAD, Batch
from img2img.methods.common import (
    Amp, ImagePool, Wrap, adversarial, batch_diversity, build_discriminator, d_inputs, grad_norm, identity, make_players,
    set_requires_grad, split_halves, step_optimizer, unwrap,
)  # fmt: skip
from img2img.nets.generators import generator_to_train


class CycleGAN:
    d_loss_keys = ("D_A", "D_B")

    def __init__(self, G_AB: nn.Module, G_BA: nn.Module, D_A: nn.Module, D_B: nn.Module, cfg: RunConfig, amp: Amp,
                 total_steps: int, decay_start: int, seed: int = 0):
        """Nets built (and wrapped) by the caller. D_A judges domain A (real a vs G_BA(b)); D_B
        judges domain B. seed drives the image pools' own random generators."""
        self.cfg, self.amp, self.adv = cfg, amp, adversarial(cfg)
        self.G_AB, self.G_BA, self.D_A, self.D_B = G_AB, G_BA, D_A, D_B
        self.spec = unwrap(G_AB).spec
        self.device = next(unwrap(G_AB).parameters()).device  # where resumed pool images go
        nets = {"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}
        self.players = make_players(cfg, nets, {"G": ["G_AB", "G_BA"], "D": ["D_A", "D_B"]}, amp, total_steps, decay_start)
        self.pool_a = ImagePool(cfg.train.pool_size, seed)
        self.pool_b = ImagePool(cfg.train.pool_size, seed + 1)

    @classmethod
    def from_config(cls, cfg: RunConfig, device: torch.device, amp: Amp, total_steps: int, decay_start: int,
                    wrap: Wrap = identity, seed: int = 0) -> "CycleGAN":
        m = cfg.model
        spec = m.generator_spec()
        nets = [generator_to_train(spec), generator_to_train(spec), build_discriminator(m, m.input_nc), build_discriminator(m, m.output_nc)]
        return cls(*(wrap(n.to(device)) for n in nets), cfg, amp, total_steps, decay_start, seed=seed)

    def train_step(self, batch: Batch, noise: float) -> dict[str, float]:
        a, b = batch["A"], batch["B"]
        with self.amp.autocast():
            fake_b, fake_a = self.G_AB(a), self.G_BA(b)
        stats = self.g_step(a, b, fake_a, fake_b, noise)
        stats.update(self.d_step(a, b, fake_a.detach(), fake_b.detach(), noise))
        return stats

    def g_step(self, a: torch.Tensor, b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor, noise: float) -> dict[str, float]:
        """Update both generators with both Ds frozen."""
        cfg = self.cfg.loss
        D_A, D_B = unwrap(self.D_A), unwrap(self.D_B)
        for D in (D_A, D_B):
            set_requires_grad(D, False)
        with self.amp.autocast():
            rec_a, rec_b = self.G_BA(fake_b), self.G_AB(fake_a)
            outs_b = D_B(torch.cat(d_inputs(b, fake_b, self.cfg, noise)))
            outs_a = D_A(torch.cat(d_inputs(a, fake_a, self.cfg, noise)))
            use_idt = cfg.lambda_identity > 0
            if use_idt:
                idt_b, idt_a = self.G_AB(b), self.G_BA(a)
        adv_ab = sum(self.adv.g(r, f) for r, f in split_halves(outs_b))
        adv_ba = sum(self.adv.g(r, f) for r, f in split_halves(outs_a))
        cyc = cycle_loss(rec_a.float(), a) + cycle_loss(rec_b.float(), b)
        idt = identity_loss(idt_b.float(), b) + identity_loss(idt_a.float(), a) if use_idt else torch.zeros((), device=a.device)
        loss = adv_ab + adv_ba + cfg.lambda_cycle * cyc + cfg.lambda_cycle * cfg.lambda_identity * idt
        step_optimizer(loss, self.players.optimizers["G"], self.players.scalers["G"])
        self.players.update_averages()
        for D in (D_A, D_B):
            set_requires_grad(D, True)
        return {"G_AB": adv_ab.item(), "G_BA": adv_ba.item(), "cycle": cyc.item(), "idt": idt.item(),
                STAT_G_GRAD: grad_norm(self.G_AB), **batch_diversity(fake_b, b)}  # fmt: skip

    def d_step(self, a: torch.Tensor, b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor, noise: float) -> dict[str, float]:
        """Update D_A and D_B on real images vs fakes drawn from the image pools."""
        cfg = self.cfg.loss
        real_label = 1.0 - cfg.label_smoothing
        total, stats = 0.0, {}
        for name, D, real, fake in (("D_A", self.D_A, a, self.pool_a.query(fake_a)), ("D_B", self.D_B, b, self.pool_b.query(fake_b))):
            real_in, fake_in = d_inputs(real, fake, self.cfg, noise)
            with self.amp.autocast():
                outs = D(torch.cat([real_in, fake_in]))
            loss = sum(self.adv.d(r, f, real_label) for r, f in split_halves(outs))
            stats[name] = loss.item()
            if self.adv.gradient_penalty:
                loss = loss + cfg.lambda_gp * gradient_penalty(unwrap(D), real_in.float(), fake_in.float())
            if cfg.r1_gamma > 0:
                loss = loss + cfg.r1_gamma / 2 * r1_penalty(unwrap(D), real_in.float())
            total = total + loss
        step_optimizer(total, self.players.optimizers["D"], self.players.scalers["D"])
        return stats

    def step_schedules(self) -> None:
        self.players.step_schedules()

    def learning_rate(self) -> float:
        return self.players.lr("G")

    @torch.no_grad()
    def samples(self, batch: Batch) -> list[torch.Tensor]:
        """Columns of the sample grid: A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B) | G_AB(G_BA(B))."""
        G_AB, G_BA = self.players.saved("G_AB"), self.players.saved("G_BA")
        G_AB.eval(), G_BA.eval()
        fake_b, fake_a = G_AB(batch["A"]).float(), G_BA(batch["B"]).float()
        rows = [batch["A"], fake_b, G_BA(fake_b).float(), batch["B"], fake_a, G_AB(fake_a).float()]
        G_AB.train(), G_BA.train()
        return rows

    def generators(self) -> dict[str, nn.Module]:
        return {"AtoB": self.players.saved("G_AB"), "BtoA": self.players.saved("G_BA")}

    def nets(self) -> dict[str, nn.Module]:
        return {k: unwrap(v) for k, v in self.players.nets.items()}

    def state_dict(self) -> dict[str, Any]:
        return {**self.players.state_dict(), "pools": {"A": self.pool_a.state_dict(), "B": self.pool_b.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.players.load_state_dict(state)
        self.pool_a.load_state_dict(state["pools"]["A"], self.device)
        self.pool_b.load_state_dict(state["pools"]["B"], self.device)
