"""The interface every training method implements, and the stat keys the loop and the health
monitor read. The loop (img2img.train) knows methods only through this protocol."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from img2img.nets.generators import GeneratorSpec

Batch = dict[str, torch.Tensor]  # {"A": N x C x H x W, "B": ...} in [-1, 1]

# Stat keys with a meaning beyond "a loss to plot" (train_step's returned dict):
STAT_G_GRAD = "G_grad"        # L2 norm of G's gradients (exploding updates)
STAT_DIVERSITY = "diversity"  # batch std of outputs / batch std of targets (mode collapse; batch >= 2)


class Method(Protocol):
    """A GAN method: its networks, optimizers and one training step (D step + G step)."""

    spec: GeneratorSpec            # the generators' architecture (what checkpoints store)
    d_loss_keys: tuple[str, ...]   # stat keys that are discriminator losses (health: D won)

    def train_step(self, batch: Batch, noise: float) -> dict[str, float]:
        """One D step and one G step on a batch; noise = instance-noise sigma for D's inputs."""
        ...

    def step_schedules(self) -> None:
        """Advance every learning-rate schedule by one step."""
        ...

    def learning_rate(self) -> float:
        """G's current learning rate (for the logs)."""
        ...

    def samples(self, batch: Batch) -> list[torch.Tensor]:
        """The columns of a sample grid (e.g. input | output | target), in [-1, 1], from the
        generators as saved."""
        ...

    def generators(self) -> dict[str, nn.Module]:
        """direction ("AtoB" / "BtoA") -> generator (unwrapped from DDP), or its moving average
        with train.ema_decay: what is saved."""
        ...

    def nets(self) -> dict[str, nn.Module]:
        """Every trained network by name (unwrapped): what must agree across DDP ranks."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Resumable state: plain tensors and numbers (torch.load(..., weights_only=True))."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
