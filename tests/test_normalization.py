"""A generator behaves at inference exactly as it did in training (issue: the pix2pix train/test
gap). Instance norm (the presets' default) has no running statistics: the exported ONNX model
equals the training-mode forward with dropout off. Batch norm's running statistics are
re-estimated before every checkpoint, never left stale."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, needs_hed, photo
from img2img.checkpoint import load_generator
from img2img.config import load_config
from img2img.data.datasets import build_dataset
from img2img.export import export_onnx
from img2img.methods.common import Amp, recalibrate_batch_norm
from img2img.runtime import Translator
from img2img.train import recalibration_batches, train

CPU = torch.device("cpu")
TOLERANCE = 1e-4  # max abs difference in [-1, 1] units: far below one level of 255 (0.0078)


def training_mode_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The forward training runs, without its noise: train mode, dropout off."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("preset", ["colorization", pytest.param("sketch2photo", marks=needs_hed),
                                    pytest.param("colorization-cpu", marks=needs_hed)])  # HED: drawings; VGG trunk
def test_exported_model_equals_the_training_forward(tmp_path, data_root, log, preset):
    cfg = load_config(preset, [*TINY, "train.max_steps=4", "data.batch_size=2"])
    assert cfg.model.norm_g == "instance"
    train(cfg, data_root / "photos", tmp_path / "run", CPU, log, progress=False)
    onnx = export_onnx(tmp_path / "run", tmp_path / "g.onnx").path
    grey = [photo(name, 64).convert("L") for name in ("chelsea", "coffee", "astronaut")]
    x = torch.from_numpy(np.stack([np.asarray(g, np.float32)[None] / 127.5 - 1 for g in grey]))
    ref = training_mode_forward(load_generator(tmp_path / "run" / "G_AtoB.safetensors"), x).numpy()
    got = Translator(onnx, keep_luminance=False).run_batch(x.numpy())
    assert np.abs(got - ref).max() < TOLERANCE


def test_batch_norm_statistics_are_re_estimated_before_every_checkpoint(tmp_path, data_root, log):
    cfg = load_config("colorization", [*TINY, "model.norm_g=batch", "train.max_steps=4", "data.batch_size=2",
                                       "train.bn_recalibration_images=12", "train.amp=off"])
    train(cfg, data_root / "photos", tmp_path / "run", CPU, log, progress=False)
    saved = load_generator(tmp_path / "run" / "G_AtoB.safetensors")
    # The saved statistics are those of a fresh pass over the same 12 training images ...
    expected = load_generator(tmp_path / "run" / "G_AtoB.safetensors")
    dataset = build_dataset(cfg.data, data_root / "photos", seed=cfg.train.seed, log=log)
    recalibrate_batch_norm(expected, recalibration_batches(dataset, 12, CPU, torch.contiguous_format), Amp("cpu", None))
    norms = [(a, b) for a, b in zip(saved.modules(), expected.modules()) if isinstance(a, nn.BatchNorm2d)]
    assert norms
    for a, b in norms:
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-6) and torch.allclose(a.running_var, b.running_var, rtol=1e-5)
    # ... not the exponential averages gathered during training (which lag the weights).
    stale = load_config("colorization", [*TINY, "model.norm_g=batch", "train.max_steps=4", "data.batch_size=2",
                                         "train.bn_recalibration_images=0", "train.amp=off"])
    train(stale, data_root / "photos", tmp_path / "stale", CPU, log, progress=False)
    lagging = load_generator(tmp_path / "stale" / "G_AtoB.safetensors")
    differs = [not torch.allclose(a.running_var, c.running_var, rtol=1e-3)
               for (a, _), c in zip(norms, (m for m in lagging.modules() if isinstance(m, nn.BatchNorm2d)))]
    assert any(differs)
