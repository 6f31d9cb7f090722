"""Pieces both methods use: optimizers, the LR schedule, mixed precision, the image pool."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from img2img.config import RunConfig
from img2img.losses import ADVERSARIAL_LOSSES, AdversarialLoss


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(net, "module", net)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def split_halves(outputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """D judges cat([real, fake]) in one forward (one spectral-norm power iteration, one DDP
    sync); this splits every scale's output back into (real, fake)."""
    return [tuple(o.float().chunk(2, dim=0)) for o in outputs]


def adversarial(cfg: RunConfig) -> AdversarialLoss:
    return ADVERSARIAL_LOSSES[cfg.loss.gan]


@dataclass
class Amp:
    """Mixed precision on CUDA: bf16 needs no loss scaling; fp16 uses one GradScaler per player."""

    device_type: str
    dtype: torch.dtype | None  # None = full precision

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def choose_amp(mode: str, device: torch.device) -> Amp:
    """auto: bf16 on GPUs that support it, else fp16; always full precision on CPU."""
    if device.type != "cuda" or mode == "off":
        return Amp(device.type, None)
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return Amp(device.type, torch.bfloat16 if mode == "bf16" else torch.float16)


def adam(params: Iterable[nn.Parameter], lr: float, cfg: RunConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(cfg.train.beta1, cfg.train.beta2))


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, decay_start: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant rate until decay_start, then linear to 0 at total_steps (CycleGAN's schedule,
    counted in steps): lr(t) = lr0 * min(1, (total - t) / (total - decay_start))."""
    span = max(total_steps - decay_start, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, max(0.0, (total_steps - t) / span)))


def step_optimizer(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def grad_norm(net: nn.Module) -> float:
    """L2 norm of all gradients of net (after backward); a health signal, not used for clipping."""
    grads = [p.grad.detach().float().norm() for p in net.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def batch_diversity(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """{"diversity": per-pixel std across the batch of G's outputs / the same for real images}.
    Near 0 means G maps different inputs to the same output (mode collapse). Needs batch >= 2."""
    if fake.shape[0] < 2:
        return {}
    return {"diversity": (fake.detach().float().std(0).mean() / real.float().std(0).mean().clamp_min(1e-6)).item()}


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), as in CycleGAN: D sees, with
    probability 1/2, an older fake instead of the newest, which damps oscillation.
    Randomness comes from its own generator, saved with the checkpoint for exact resume."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=self.rng) < 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.rng))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        images = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"images": images, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [img.to(device) for img in state["images"]]
        self.rng.set_state(state["rng"])


@dataclass
class Players:
    """What a method trains, by role: nets, and per player an optimizer, a schedule and a scaler.
    state_dict()/load_state_dict() give the resumable state as plain tensors and numbers."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scalers: dict[str, torch.amp.GradScaler]
    lrs: dict[str, float]  # the config's base rates; they win over saved ones on resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: unwrap(v).state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for group in ("nets", "optimizers", "schedulers", "scalers"):
            for k, obj in getattr(self, group).items():
                (unwrap(obj) if group == "nets" else obj).load_state_dict(state[group][k])
        # A resumed run may change train.lr_g / lr_d: rebase the schedule on the config's rates.
        for p, sched in self.schedulers.items():
            sched.base_lrs = [self.lrs[p]] * len(sched.base_lrs)
            for group, factor in zip(sched.optimizer.param_groups, (f(sched.last_epoch) for f in sched.lr_lambdas)):
                group["initial_lr"], group["lr"] = self.lrs[p], self.lrs[p] * factor

    def step_schedules(self) -> None:
        for s in self.schedulers.values():
            s.step()


def make_players(cfg: RunConfig, nets: dict[str, nn.Module], groups: dict[str, list[str]], lrs: dict[str, float],
                 amp: Amp, total_steps: int, decay_start: int) -> Players:
    """One Adam, schedule and scaler per player; groups maps a player ("G", "D") to its nets."""
    optimizers = {
        p: adam([w for n in names for w in nets[n].parameters()], lrs[p], cfg) for p, names in groups.items()
    }
    return Players(
        nets=nets,
        optimizers=optimizers,
        schedulers={p: linear_decay(o, total_steps, decay_start) for p, o in optimizers.items()},
        scalers={p: amp.scaler() for p in groups},
        lrs=dict(lrs),
    )
