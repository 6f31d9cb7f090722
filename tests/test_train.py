"""End to end: the real CLI trains both methods on real photos, resumes exactly, stops cleanly."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, ctrl_c_reaches_child
from img2img import Img2ImgError
from img2img.checkpoint import load_generator, load_state
from img2img.config import load_config
from img2img.train import train

CPU = torch.device("cpu")


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "img2img", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def sets(items):
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize("preset,folder,files", [
    ("pix2pix", "paired", ["G_AtoB.safetensors"]),
    ("cyclegan", "unpaired", ["G_AtoB.safetensors", "G_BtoA.safetensors"]),
])
def test_cli_trains_and_writes_the_run_directory(tmp_path, data_root, preset, folder, files):
    run = tmp_path / "run"
    r = cli("train", "--config", preset, "--data", data_root / folder, "--run-dir", run, "--max-steps", 4,
            "--no-progress", *sets(TINY))
    assert r.returncode == 0, r.stderr
    for f in ["config.yaml", "last.pt", *files]:
        assert (run / f).is_file(), f
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == 4
    g = load_generator(run / files[0])
    assert g(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    # Resume continues from the saved step.
    r = cli("train", "--run-dir", run, "--resume", "--max-steps", 6, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr and "at step 4" in r.stderr
    assert load_state(run / "last.pt")["step"] == 6


def test_colorization_and_sketch_presets_train(tmp_path, data_root, log):
    for preset in ("colorization", "sketch2photo"):
        cfg = load_config(preset, [*TINY, "train.max_steps=2", f"data.root={data_root / 'photos'}"])
        assert train(cfg, data_root / "photos", tmp_path / preset, CPU, log, progress=False).step == 2
        g = load_generator(tmp_path / preset / "G_AtoB.safetensors")
        assert g(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("preset,folder,extra", [
    ("pix2pix", "paired", ["model.dropout=0.5", "loss.instance_noise=0.1", "train.ema_decay=0.9",
                           "loss.d_augment=[translation,cutout]", "loss.r1_gamma=1"]),
    ("cyclegan", "unpaired", ["train.pool_size=2", "loss.label_smoothing=0.1", "loss.d_augment=[translation]",
                              "loss.r1_gamma=1"]),
])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, data_root, log, preset, folder, extra):
    """6 straight steps vs 3 steps + resume for 3: identical generator weights (CPU)."""
    def cfg(steps):
        return load_config(preset, [*TINY, *extra, f"train.max_steps={steps}", "data.batch_size=2"])

    train(cfg(6), data_root / folder, tmp_path / "straight", CPU, log, progress=False)
    train(cfg(3), data_root / folder, tmp_path / "resumed", CPU, log, progress=False)
    assert load_state(tmp_path / "resumed/last.pt")["step"] == 3
    train(cfg(6), data_root / folder, tmp_path / "resumed", CPU, log, resume=True, progress=False)
    for name in ("G_AtoB.safetensors", "G_BtoA.safetensors") if preset == "cyclegan" else ("G_AtoB.safetensors",):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, data_root, log):
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=2"])
    train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    before = (tmp_path / "run/G_AtoB.safetensors").read_bytes()
    # Inject a non-finite loss: an infinite L1 weight on resume.
    bad = load_config("pix2pix", [*TINY, "train.max_steps=8", "loss.lambda_l1=.inf", "train.checkpoint_every=100"])
    with pytest.raises(Img2ImgError, match=r"NaN/Inf at step \d+.*last good checkpoint \(step 2\)"):
        train(bad, data_root / "paired", tmp_path / "run", CPU, log, resume=True, progress=False)
    assert (tmp_path / "run/G_AtoB.safetensors").read_bytes() == before
    assert load_state(tmp_path / "run/last.pt")["step"] == 2


def test_learning_rates_can_change_on_resume(tmp_path, data_root, log):
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=2"])
    train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    cfg = load_config("pix2pix", [*TINY, "train.max_steps=3", "train.lr_g=1e-5"])
    train(cfg, data_root / "paired", tmp_path / "run", CPU, log, resume=True, progress=False)
    groups = load_state(tmp_path / "run/last.pt")["method"]["optimizers"]["G"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-5)


@pytest.mark.parametrize("target,workers", [("process", 0), ("process group", 2)])
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, data_root, target, workers):
    """SIGTERM to the trainer, or to its whole process group (Ctrl-C, `kill -- -PGID`, service
    managers) with data-loader workers, which must leave the stop to the main process."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "-c", "pix2pix", "--data", str(data_root / "paired"), "--run-dir", str(run),
         "--max-steps", "100000", "--no-progress", *sets([*TINY, "train.checkpoint_every=1000000", f"data.num_workers={workers}"])],
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    deadline = time.time() + 120
    for line in proc.stderr:  # wait until training runs
        if "training pix2pix" in line or time.time() > deadline:
            break
    time.sleep(1.0)
    if target == "process":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, rest  # 143: a scheduler sees the stop
    assert "Traceback" not in rest and "SIGTERM received" in rest
    assert f"img2img train --run-dir {run} --resume" in rest  # the exact command to continue
    state = load_state(run / "last.pt")
    assert 0 < state["step"] < 100000
    # The generator file holds the weights of the checkpointed step.
    saved = load_generator(run / "G_AtoB.safetensors").state_dict()
    nets = state["method"]["nets"]["G"]
    assert saved.keys() == nets.keys() and all(torch.equal(saved[k], nets[k]) for k in saved)


SLOW_STEPS = """
import sys, time
import img2img.train
step = img2img.train.Training.step
def slow(self, *args):
    time.sleep(0.5)  # a long step: both Ctrl-C land inside it
    return step(self, *args)
img2img.train.Training.step = slow
from img2img.cli import main
sys.argv = ["img2img", *sys.argv[1:]]
main()
"""


def test_double_ctrl_c_aborts_with_a_line(tmp_path, data_root):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_STEPS, "train", "-c", "pix2pix", "--data", str(data_root / "paired"), "--run-dir",
         str(tmp_path / "run"), "--max-steps", "100000", "--no-progress", *sets([*TINY, "train.checkpoint_every=1000000"])],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    for line in proc.stderr:
        if "training pix2pix" in line:
            break
    time.sleep(1.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "SIGINT received" in rest and rest.rstrip().endswith("img2img: aborted"), rest
    assert "Traceback" not in rest and not (tmp_path / "run/last.pt").exists()


def test_a_data_folder_named_like_a_number_trains(tmp_path, data_root):
    """--data is a path: typed options go into the config as they are, never re-parsed as YAML."""
    import shutil

    shutil.copytree(data_root / "paired", tmp_path / "2024")
    r = cli("train", "-c", "pix2pix", "--data", "2024", "--run-dir", "run", "--max-steps", 2, "--no-progress",
            *sets(TINY), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "data:\n  kind: paired\n  root: '2024'" in (tmp_path / "run/config.yaml").read_text()
    # A finished run says what to do next.
    assert "img2img export run -o run/pix2pix.onnx" in r.stderr and "img2img serve --models run" in r.stderr


def test_start_up_names_the_device_and_a_long_cpu_run_names_the_cpu_preset(tmp_path, data_root):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "-c", "colorization", "--data", str(data_root / "photos"), "--run-dir",
         str(tmp_path / "run"), "--max-steps", "100000000", "--no-progress", *sets([*TINY, "train.checkpoint_every=1000000"])],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "over a day" in line or len(seen) > 50:
            break
    proc.send_signal(signal.SIGTERM)
    seen.append(proc.stderr.read())
    proc.wait(timeout=60)
    text = "".join(seen)
    assert "device CPU:" in text and "thread" in text and "native bf16" in text
    assert "s/step" in text and "ETA" in text
    assert "The preset colorization-cpu is sized for a CPU" in text and "--config colorization-cpu" in text


def _make_user_error(kind: str, tmp_path: Path, data_root: Path) -> list:
    import shutil

    if kind == "empty":
        (tmp_path / "d/train/AB").mkdir(parents=True)
        return ["-c", "pix2pix", "--data", tmp_path / "d"]
    if kind == "mismatch":
        shutil.copytree(data_root / "paired_ab", tmp_path / "d")
        (tmp_path / "d/train/A/rocket.png").unlink()
        return ["-c", "pix2pix", "--data", tmp_path / "d"]
    if kind == "unreadable":
        shutil.copytree(data_root / "paired", tmp_path / "d")
        (tmp_path / "d/train/AB/broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
        return ["-c", "pix2pix", "--data", tmp_path / "d", "--set", "data.strict=true"]
    if kind == "small":
        shutil.copytree(data_root / "photos", tmp_path / "d")
        return ["-c", "colorization", "--data", tmp_path / "d", "--set", "data.preprocess=crop", "--set", "data.crop_size=64", "--set", "model.num_downs=5"]
    if kind == "preset":
        return ["-c", "pix3pix", "--data", data_root / "paired"]
    if kind == "key":
        return ["-c", "pix2pix", "--data", data_root / "paired", "--set", "train.lr=1"]
    if kind == "nodata":
        return ["-c", "pix2pix"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,message", [
    ("empty", "no readable images"),
    ("mismatch", "only in B: ['rocket']"),
    ("unreadable", "broken.jpg: cannot read image"),
    ("small", "smaller than data.crop_size=64"),
    ("preset", "presets: colorization, colorization-cpu, cyclegan, cyclegan-cpu, pix2pix, pix2pix-cpu, sketch2photo, sketch2photo-cpu"),
    ("key", "unknown config key 'train.lr'"),
    ("nodata", "pass --data DIR"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, data_root, kind, message):
    args = _make_user_error(kind, tmp_path, data_root)
    r = cli("train", *args, "--run-dir", tmp_path / "run", "--max-steps", 1, "--no-progress")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("img2img: error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr


def test_existing_run_is_not_overwritten_without_resume(tmp_path, data_root):
    args = ["train", "-c", "pix2pix", "--data", data_root / "paired", "--run-dir", tmp_path / "run", "--max-steps", 1, "--no-progress", *sets(TINY)]
    assert cli(*args).returncode == 0
    before = (tmp_path / "run/last.pt").read_bytes()
    r = cli(*args)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert (tmp_path / "run/last.pt").read_bytes() == before


def test_a_model_without_training_state_is_not_overwritten(tmp_path, data_root):
    """A folder holding a finished or shipped model (no last.pt) is never trained into."""
    args = ["train", "-c", "pix2pix", "--data", data_root / "paired", "--run-dir", tmp_path / "run", "--max-steps", 1, "--no-progress", *sets(TINY)]
    assert cli(*args).returncode == 0
    (tmp_path / "run/last.pt").unlink()  # as in checkpoints/pretrained/<name>/
    before = (tmp_path / "run/G_AtoB.safetensors").read_bytes()
    r = cli(*args)
    assert r.returncode == 2 and "holds a model (G_AtoB.safetensors)" in r.stderr
    assert (tmp_path / "run/G_AtoB.safetensors").read_bytes() == before


def test_train_serve_exports_and_serves_the_trained_model(tmp_path, data_root):
    """`train --serve`: one command from a photo folder to the model answering in the web UI."""
    import queue
    import socket
    import threading

    from gradio_client import Client, handle_file
    from PIL import Image

    from conftest import photo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    # PYTHONFAULTHANDLER: a SIGABRT makes the child print every thread's stack (see the finally).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "img2img", "train", "--config", "colorization", "--data", str(data_root / "photos"),
                             "--run-dir", str(run), "--max-steps", "2", "--no-progress", "--serve", "--port", str(port),
                             *sets([*TINY, "name=mine"])], stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=ctrl_c_reaches_child)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        seen, deadline = [], time.monotonic() + 240
        while not any("web UI at" in line for line in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert (run / "mine.onnx").is_file() and any("wrote " in line and "mine.onnx" in line for line in seen)
        grey = tmp_path / "grey.png"
        photo("coffee", 48).convert("L").save(grey)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        try:
            out = Image.open(client.predict(handle_file(str(grey)), api_name="/colorize"))
        finally:
            client.close()  # its heartbeat stream stays open otherwise
        assert out.mode == "RGB" and out.size == (48, 48)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Seen in 3 full-suite runs (2026-12-03, never alone) while serve stopped through Gradio's
            # block_thread(); not since serve closes the app itself. Not this test's claim (serving
            # the trained model): stop it, with its threads' stacks in the warning, to find the wait.
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            time.sleep(1)  # the reader thread drains the dump
            dump = []
            while not lines.empty():
                dump.append(lines.get())
            warnings.warn("train --serve did not stop within 60 s of SIGINT; its threads:\n" + "".join(dump[-200:]), stacklevel=1)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_honour_the_umask(tmp_path, data_root, log, umask, mode):
    """config.yaml, last.pt, G_*.safetensors and the sample grids get 0666 & ~umask, like any file
    the user creates (they were 0600 whatever the umask: the temp file's mode survived the rename)."""
    old = os.umask(umask)
    try:
        cfg = load_config("pix2pix", [*TINY, "train.max_steps=2"])
        train(cfg, data_root / "paired", tmp_path / "run", CPU, log, progress=False)
    finally:
        os.umask(old)
    files = [tmp_path / "run" / f for f in ("config.yaml", "last.pt", "G_AtoB.safetensors")]
    files += list((tmp_path / "run" / "samples").iterdir())
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}
