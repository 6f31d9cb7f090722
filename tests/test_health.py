import json

import pytest
import torch

from conftest import TINY
from img2img import Img2ImgError
from img2img.config import load_config
from img2img.health import HealthMonitor
from img2img.methods.common import batch_diversity
from img2img.train import train

CPU = torch.device("cpu")


def test_forced_d_collapse_raises_a_warning_with_a_hint(tmp_path, data_root, log, caplog):
    # G frozen (lr 1e-9, no L1) and a fast D: D separates real from fake perfectly.
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=40", "train.lr_d=1e-3", "train.lr_g=1e-9",
                                  "loss.gan=rahinge", "loss.lambda_l1=0", "train.health_window=10"])
    train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    findings = json.loads((tmp_path / "run/health.json").read_text())["findings"]
    collapse = [f for f in findings if f["kind"] == "d_collapse"]
    assert collapse and collapse[0]["step"] >= 10
    assert "label_smoothing" in collapse[0]["hint"] and "lr_d" in collapse[0]["hint"]
    assert "D loss near 0" in caplog.text and "hint:" in caplog.text


def test_injected_nan_is_recorded_and_stops(tmp_path, data_root, log):
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=4", "loss.instance_noise=.inf"])
    with pytest.raises(Img2ImgError, match="NaN/Inf at step 1"):
        train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    findings = json.loads((tmp_path / "run/health.json").read_text())["findings"]
    assert findings[-1]["kind"] == "nan" and findings[-1]["step"] == 1
    assert not (tmp_path / "run/last.pt").exists()  # nothing bad was saved


def test_gradient_and_mode_collapse_signs_need_a_whole_window():
    m = HealthMonitor(window=4, grad_limit=100)
    assert not any(m.update(s, {"G_grad": 500.0}) for s in range(3))  # one window not yet full
    (f,) = m.update(3, {"G_grad": 500.0})
    assert f.kind == "g_gradient" and "lr_g" in f.hint
    assert not m.update(4, {"G_grad": 500.0})  # re-armed: at most once per window
    for s in range(4):
        found = m.update(10 + s, {"diversity": 0.01, "D": 0.5})
    assert [f.kind for f in found] == ["mode_collapse"]


def test_batch_diversity():
    real = torch.randn(4, 3, 8, 8)
    assert batch_diversity(real[:1], real[:1]) == {}
    assert batch_diversity(real, real)["diversity"] == pytest.approx(1.0)
    same = real[:1].expand(4, -1, -1, -1)
    assert batch_diversity(same, real)["diversity"] == pytest.approx(0.0)
