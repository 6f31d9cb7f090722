"""Training health: the GAN failure signs from the literature, watched over a window of steps.

- D loss near 0 for a whole window: D separates real from fake perfectly and G gets no useful
  gradient (Arjovsky & Bottou 2017).
- G gradient norm above a limit (100) for a whole window: exploding updates.
- Output diversity collapsing across a batch: mode collapse (Goodfellow 2016, tutorial §5.1.1).
NaN/Inf losses are fatal and handled by the training loop.
"""

from __future__ import annotations

import json
import statistics
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from img2img.checkpoint import atomic_write

D_FLOOR = 0.01        # mean |D loss| below this over a window counts as "D won"
DIVERSITY_FLOOR = 0.1  # batch std of outputs / batch std of targets below this is collapse

HINTS = {
    "d_collapse": "lower train.lr_d, raise loss.label_smoothing (e.g. 0.1) or loss.instance_noise (e.g. 0.1)",
    "g_gradient": "lower train.lr_g, or use a relativistic loss (loss.gan=ralsgan) with spectral norm on; if samples "
                  "look fine, raise train.grad_norm_limit (pix2pix's lambda_l1=100 alone makes G's gradients large)",
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
    def __init__(self, window: int, grad_limit: float, watch_d: bool = True):
        self.window, self.grad_limit, self.watch_d = window, grad_limit, watch_d
        self.history: dict[str, deque[float]] = {}
        self.findings: list[Finding] = []

    def _full(self, key: str, value: float) -> deque[float] | None:
        h = self.history.setdefault(key, deque(maxlen=self.window))
        h.append(value)
        return h if len(h) == self.window else None

    def update(self, step: int, stats: dict[str, float]) -> list[Finding]:
        """Feed one step's stats; returns findings raised at this step. A sign is re-armed after
        it fires, so it is reported at most once per window."""
        new: list[tuple[str, str]] = []
        for key, value in stats.items():
            if key.startswith("D") and self.watch_d:
                h = self._full(key, abs(value))
                if h is not None and statistics.fmean(h) < D_FLOOR:
                    new.append(("d_collapse", f"{key} loss near 0 (mean |loss| {statistics.fmean(h):.2g}) for {self.window} steps"))
                    h.clear()
            elif key == "G_grad":
                h = self._full(key, value)
                if h is not None and statistics.median(h) > self.grad_limit:
                    new.append(("g_gradient", f"G gradient norm {statistics.median(h):.3g} > {self.grad_limit:g} (median of {self.window} steps)"))
                    h.clear()
            elif key == "diversity":
                h = self._full(key, value)
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
        data = {"window": self.window, "grad_limit": self.grad_limit, "findings": [asdict(f) for f in self.findings]}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
