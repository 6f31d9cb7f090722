import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from img2img import Img2ImgError
from img2img.card import read_generator_metadata
from img2img.checkpoint import generator_card, load_generator, load_state, save_generator, save_state
from img2img.config import load_config


@pytest.mark.parametrize("preset", ["pix2pix", "cyclegan", "colorization"])
def test_generator_round_trip_needs_no_flags(tmp_path, preset):
    cfg = load_config(preset, ["model.ngf=4", "model.n_blocks=1", "model.num_downs=4", "model.upsample=bilinear", "data.crop_size=32", "data.load_size=36"])
    net = cfg.model.generator_spec().build().eval()
    save_generator(tmp_path / "G.safetensors", net, cfg, "BtoA")
    loaded = load_generator(tmp_path / "G.safetensors")
    assert loaded.spec == net.spec == cfg.model.generator_spec()
    x = torch.randn(1, cfg.model.input_nc, 32, 32)
    assert torch.equal(net(x), loaded(x))
    meta = read_generator_metadata(tmp_path / "G.safetensors")
    assert meta["direction"] == "BtoA" and load_config(preset, []).method in meta["config"]
    card = generator_card(tmp_path / "G.safetensors")
    assert (card.direction, card.name, card.arch) == ("BtoA", cfg.name, cfg.model.generator)
    assert (card.size_multiple, card.min_size) == net.spec.size_rules


def test_load_generator_errors(tmp_path):
    with pytest.raises(Img2ImgError, match="does not exist"):
        load_generator(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Img2ImgError, match="not a readable safetensors"):
        load_generator(tmp_path / "bad.safetensors")


def test_state_is_plain_and_loads_with_weights_only(tmp_path):
    save_state(tmp_path / "s.pt", {"step": 3, "w": torch.ones(2)})
    assert load_state(tmp_path / "s.pt")["step"] == 3
    torch.save({"obj": object()}, tmp_path / "evil.pt")  # a pickled object is refused
    with pytest.raises(Img2ImgError, match="not a loadable") as e:
        load_state(tmp_path / "evil.pt")
    assert "weights_only=False" not in str(e.value)  # never repeat PyTorch's unsafe advice


WRITER = """
import sys, torch
from img2img.checkpoint import save_state
i = 0
while True:
    i += 1
    save_state(sys.argv[1], {"step": i, "w": torch.full((4_000_000,), float(i))})
    print(i, flush=True)
"""


def test_sigkill_during_writes_leaves_a_loadable_checkpoint(tmp_path):
    """Kill the writer at several moments (most land mid-write of a 16 MB file): last.pt
    always loads, and is self-consistent."""
    path = tmp_path / "last.pt"
    for delay in (0.35, 0.5, 0.65):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete checkpoint exists
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_state(path)
        assert torch.all(state["w"] == float(state["step"]))
