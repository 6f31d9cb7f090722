"""Pieces both methods use: optimizers, the LR schedule, mixed precision, the image pool, the
discriminator built from a config, and batch-norm recalibration."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from img2img import Img2ImgError
from img2img.config import ModelConfig, RunConfig
from img2img.losses import ADVERSARIAL_LOSSES, AdversarialLoss, diff_augment, instance_noise
from img2img.methods.base import STAT_DIVERSITY
from img2img.nets import MultiScaleDiscriminator

Wrap = Callable[[nn.Module], nn.Module]  # e.g. DDP; identity on one process


def identity(net: nn.Module) -> nn.Module:
    return net


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(net, "module", net)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def d_inputs(real: torch.Tensor, fake: torch.Tensor, cfg: RunConfig, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A D's real and fake inputs, augmented (loss.d_augment) and then noised (sigma = noise)."""
    real, fake = diff_augment(real, fake, cfg.loss.d_augment)
    return instance_noise(real, noise), instance_noise(fake, noise)


def split_halves(outputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """D judges cat([real, fake]) in one forward (one spectral-norm power iteration, one DDP
    sync); this splits every scale's output back into (real, fake)."""
    return [tuple(o.float().chunk(2, dim=0)) for o in outputs]


def adversarial(cfg: RunConfig) -> AdversarialLoss:
    return ADVERSARIAL_LOSSES[cfg.loss.gan]


def build_discriminator(m: ModelConfig, in_channels: int) -> MultiScaleDiscriminator:
    return MultiScaleDiscriminator(in_channels, m.ndf, m.n_layers_d, m.norm_d, m.spectral_norm, m.num_scales_d)


@dataclass
class Amp:
    """Mixed precision: bf16 needs no loss scaling; fp16 (CUDA) uses one GradScaler per player."""

    device_type: str
    dtype: torch.dtype | None  # None = full precision

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def choose_amp(mode: str, device: torch.device, cpu_bf16: str | None = None) -> Amp:
    """CUDA, auto: bf16 on GPUs that support it, else fp16. CPU: bf16 only where the CPU has
    native bf16 instructions (cpu_bf16: devices.native_bf16(), read from the CPU flags), for auto
    and bf16 alike; emulated bf16 is slower than fp32, so auto then trains in full precision."""
    if mode == "off":
        return Amp(device.type, None)
    if device.type == "cuda":
        if mode == "auto":
            mode = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        return Amp(device.type, torch.bfloat16 if mode == "bf16" else torch.float16)
    if mode == "fp16":
        raise Img2ImgError("train.amp=fp16 is for CUDA GPUs; on the CPU use train.amp=auto (bf16 where native) or off")
    if cpu_bf16 is None:
        if mode == "bf16":
            raise Img2ImgError("train.amp=bf16: this CPU has no native bf16 (AMX or AVX512-BF16), and emulated bf16 "
                               "is slower than fp32; use train.amp=auto or off")
        return Amp(device.type, None)
    return Amp(device.type, torch.bfloat16)


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
    return {STAT_DIVERSITY: (fake.detach().float().std(0).mean() / real.float().std(0).mean().clamp_min(1e-6)).item()}


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
    """What a method trains, by role: nets, and per player an optimizer, a schedule and a scaler;
    with train.ema_decay, a moving average of each of G's nets. state_dict()/load_state_dict() give
    the resumable state as plain tensors and numbers."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scalers: dict[str, torch.amp.GradScaler]
    lrs: dict[str, float]  # the config's base rates; they win over saved ones on resume
    averages: dict[str, AveragedModel]  # net name -> its weights' moving average (G's nets; train.ema_decay)

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: unwrap(v).state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()},
            "averages": {k: v.state_dict() for k, v in self.averages.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for group in ("nets", "optimizers", "schedulers", "scalers"):
            for k, obj in getattr(self, group).items():
                (unwrap(obj) if group == "nets" else obj).load_state_dict(state[group][k])
        # A run saved without averages (train.ema_decay turned on at resume) starts them from the
        # resumed weights, at the next G step.
        for k, avg in self.averages.items():
            if k in state.get("averages", {}):
                avg.load_state_dict(state["averages"][k])
        # A resumed run may change train.lr_g / lr_d: rebase the schedule on the config's rates.
        for p, sched in self.schedulers.items():
            sched.base_lrs = [self.lrs[p]] * len(sched.base_lrs)
            for group, factor in zip(sched.optimizer.param_groups, (f(sched.last_epoch) for f in sched.lr_lambdas)):
                group["initial_lr"], group["lr"] = self.lrs[p], self.lrs[p] * factor

    def step_schedules(self) -> None:
        for s in self.schedulers.values():
            s.step()

    def update_averages(self) -> None:
        """Fold G's new weights into their moving averages (after G's optimizer step)."""
        for k, avg in self.averages.items():
            avg.update_parameters(unwrap(self.nets[k]))

    def saved(self, name: str) -> nn.Module:
        """The net as checkpoints save it: its moving average when there is one, else the net."""
        return self.averages[name].module if name in self.averages else unwrap(self.nets[name])

    def lr(self, player: str) -> float:
        return self.optimizers[player].param_groups[0]["lr"]


def make_players(cfg: RunConfig, nets: dict[str, nn.Module], groups: dict[str, list[str]],
                 amp: Amp, total_steps: int, decay_start: int) -> Players:
    """One Adam, schedule and scaler per player; groups maps a player ("G", "D") to its nets.
    G's rate is train.lr_g, D's train.lr_d (TTUR). With train.ema_decay, G's nets get moving
    averages (torch.optim.swa_utils: a copy of the net; buffers such as batch norm's running
    statistics are copied, not averaged, and re-estimated before every checkpoint)."""
    lrs = {"G": cfg.train.lr_g, "D": cfg.train.lr_d}
    optimizers = {
        p: adam([w for n in names for w in nets[n].parameters()], lrs[p], cfg) for p, names in groups.items()
    }
    return Players(
        nets=nets,
        optimizers=optimizers,
        schedulers={p: linear_decay(o, total_steps, decay_start) for p, o in optimizers.items()},
        scalers={p: amp.scaler() for p in groups},
        lrs={p: lrs[p] for p in groups},
        averages={
            n: AveragedModel(unwrap(nets[n]), multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))
            for n in (groups["G"] if cfg.train.ema_decay > 0 else [])
        },
    )


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@torch.no_grad()
def recalibrate_batch_norm(net: nn.Module, batches: Iterable[torch.Tensor], amp: Amp) -> int:
    """Re-estimate every batch norm's running mean and variance as the plain average over the
    given input batches (momentum None = cumulative average, as torch.optim.swa_utils.update_bn),
    with dropout off, as inference runs the net. Returns the number of images seen.

    Why: training at batch 1 normalizes with each image's own statistics, and the running
    averages gathered along the way lag the weights; in eval mode (export, inference) a net then
    meets statistics it never trained with. Batches of many images are needed: averaging
    per-image statistics misses the variation between images in the deep 2x2 and 4x4 layers."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training = net.training
    saved = [m.momentum for m in norms]
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    try:
        for x in batches:
            with amp.autocast():
                net(x)
            seen += x.shape[0]
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        net.train(was_training)
    return seen
