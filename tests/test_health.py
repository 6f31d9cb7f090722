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


def test_gradient_sign_is_a_jump_against_the_runs_own_history():
    m = HealthMonitor(window=20, grad_jump=10, d_keys=("D",))
    # Large but steady gradients (pix2pix's lambda_L1 = 100 gives 120-370) are normal.
    for s in range(200):
        assert not m.update(s, {"G_grad": 150.0 + 100 * (s % 3), "D": 0.5})
    assert not m.update(200, {"G_grad": 5000.0})  # one outlier step is not a jump
    found = [f for s in range(201, 210) for f in m.update(s, {"G_grad": 5000.0})]
    assert [f.kind for f in found] == ["g_gradient"] and "running median" in found[0].message and "lr_g" in found[0].hint
    assert not any(m.update(s, {"G_grad": 250.0}) for s in range(210, 260))  # back to normal: nothing more


def test_mode_collapse_and_d_signs_need_a_whole_window():
    m = HealthMonitor(window=4, grad_jump=10, d_keys=("D_A",))
    for s in range(4):
        found = m.update(10 + s, {"diversity": 0.01, "D_A": 0.5, "D": 0.0})  # "D" is not a D key of this method
    assert [f.kind for f in found] == ["mode_collapse"]
    for s in range(4):
        found = m.update(20 + s, {"D_A": 0.001})
    assert [f.kind for f in found] == ["d_collapse"]


def test_a_normal_pix2pix_run_raises_nothing(tmp_path, data_root, log):
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=60", "train.health_window=20"])
    train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    assert not (tmp_path / "run/health.json").exists()


def test_batch_diversity():
    real = torch.randn(4, 3, 8, 8)
    assert batch_diversity(real[:1], real[:1]) == {}
    assert batch_diversity(real, real)["diversity"] == pytest.approx(1.0)
    same = real[:1].expand(4, -1, -1, -1)
    assert batch_diversity(same, real)["diversity"] == pytest.approx(0.0)
