"""Training health: the GAN failure signs from the literature, judged against the run's own
history rather than fixed limits (what is normal differs by preset: pix2pix's lambda_L1 = 100
alone gives G gradient norms of 120-370 in a healthy run).

- D loss near 0 for a whole window: D separates real from fake perfectly and G gets no useful
  gradient (Arjovsky & Bottou 2017).
- G gradient norm jumping far above its running median (exploding updates): the median of the
  last window/10 steps against the median of the run's last 5 windows, once a window is known.
- Output diversity collapsing across a batch: mode collapse (Goodfellow 2016, tutorial §5.1.1).
NaN/Inf losses are fatal and handled by the training loop.
"""

from __future__ import annotations

import json
import statistics
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from img2img.io import atomic_write
from img2img.methods.base import STAT_DIVERSITY, STAT_G_GRAD

D_FLOOR = 0.01        # mean |D loss| below this over a window counts as "D won"
DIVERSITY_FLOOR = 0.1  # batch std of outputs / batch std of targets below this is collapse

HINTS = {
    "d_collapse": "lower train.lr_d, raise loss.label_smoothing (e.g. 0.1) or loss.instance_noise (e.g. 0.1), "
                  "or augment D's inputs: loss.d_augment=[translation,cutout]",
    "g_gradient": "lower train.lr_g, or use a relativistic loss (loss.gan=ralsgan) with spectral norm on; "
                  "if the samples look fine, raise train.grad_jump",
    "mode_collapse": "outputs barely differ across the batch; raise model.dropout, lower train.lr_g, or use loss.gan=ralsgan",
    "nan": "lower train.lr_g / train.lr_d, or set train.amp=off, then --resume from the last checkpoint",
}


@dataclass
class Finding:
    step: int
    kind: str
    message: str
    hint: str


class HealthMonitor:
    """d_keys: the stat keys that are discriminator losses (the method's d_loss_keys; empty for
    critics such as WGAN's, whose loss may legitimately sit near 0)."""

    def __init__(self, window: int, grad_jump: float, d_keys: tuple[str, ...] = ()):
        self.window, self.grad_jump, self.d_keys = window, grad_jump, d_keys
        self.recent = max(3, window // 10)
        self.history: dict[str, deque[float]] = {}
        self.grads: deque[float] = deque(maxlen=5 * window)
        self.grad_quiet = 0  # steps left before the gradient sign may fire again
        self.findings: list[Finding] = []

    def _full(self, key: str, value: float) -> deque[float] | None:
        h = self.history.setdefault(key, deque(maxlen=self.window))
        h.append(value)
        return h if len(h) == self.window else None

    def _gradient(self, value: float) -> str | None:
        self.grads.append(value)
        self.grad_quiet = max(0, self.grad_quiet - 1)
        if len(self.grads) < self.window + self.recent or self.grad_quiet:
            return None
        grads = list(self.grads)
        now, before = statistics.median(grads[-self.recent :]), statistics.median(grads[: -self.recent])
        if now > self.grad_jump * before:
            self.grad_quiet = self.window  # reported at most once per window
            return f"G gradient norm {now:.3g} is {now / before:.0f}x its running median {before:.3g}"
        return None

    def update(self, step: int, stats: dict[str, float]) -> list[Finding]:
        """Feed one step's stats; returns findings raised at this step. A sign is re-armed after
        it fires, so it is reported at most once per window."""
        new: list[tuple[str, str]] = []
        for key in self.d_keys:
            if key in stats:
                h = self._full(key, abs(stats[key]))
                if h is not None and statistics.fmean(h) < D_FLOOR:
                    new.append(("d_collapse", f"{key} loss near 0 (mean |loss| {statistics.fmean(h):.2g}) for {self.window} steps"))
                    h.clear()
        if STAT_G_GRAD in stats and (msg := self._gradient(stats[STAT_G_GRAD])):
            new.append(("g_gradient", msg))
        if STAT_DIVERSITY in stats:
            h = self._full(STAT_DIVERSITY, stats[STAT_DIVERSITY])
            if h is not None and statistics.fmean(h) < DIVERSITY_FLOOR:
                new.append(("mode_collapse", f"output diversity {statistics.fmean(h):.2g} of the targets' for {self.window} steps"))
                h.clear()
        found = [Finding(step, kind, msg, HINTS[kind]) for kind, msg in new]
        self.findings += found
        return found

    def record(self, step: int, kind: str, message: str) -> Finding:
        f = Finding(step, kind, message, HINTS[kind])
        self.findings.append(f)
        return f

    def load(self, path: Path) -> None:
        """Take over the findings of an earlier (resumed) run."""
        if path.is_file():
            self.findings = [Finding(**f) for f in json.loads(path.read_text())["findings"]]

    def save(self, path: Path) -> None:
        data = {"window": self.window, "grad_jump": self.grad_jump, "findings": [asdict(f) for f in self.findings]}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
