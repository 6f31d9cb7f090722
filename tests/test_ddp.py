"""torchrun with 2 CPU processes (gloo): real DDP, then resume across process counts."""

import os
import subprocess
import sys

import pytest

from conftest import TINY
from img2img.checkpoint import load_state


def run(args, nproc=None):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([*launcher, "-m", "img2img", "train", "--no-progress", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stderr


def sets(items):
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize("preset,folder", [("cyclegan", "unpaired"), ("pix2pix", "paired")])
def test_ddp_two_processes_then_single_process_resume(tmp_path, data_root, preset, folder):
    run_dir = tmp_path / "run"
    base = ["--run-dir", run_dir, *sets([*TINY, "data.batch_size=1"])]
    out = run(["-c", preset, "--data", data_root / folder, "--max-steps", 3, *base], nproc=2)
    assert "batch 1 x 2 process(es)" in out
    assert "weights and buffers identical on all 2 ranks at step 3" in out
    assert out.count("training ") == 1  # only rank 0 logs
    assert load_state(run_dir / "last.pt")["step"] == 3
    out = run(["--resume", "--run-dir", run_dir, "--max-steps", 5])
    assert "at step 3" in out and load_state(run_dir / "last.pt")["step"] == 5
    # ... and a single-process checkpoint resumes under DDP.
    out = run(["--resume", "--run-dir", run_dir, "--max-steps", 7], nproc=2)
    assert "at step 5" in out and "identical on all 2 ranks at step 7" in out
    assert load_state(run_dir / "last.pt")["step"] == 7
