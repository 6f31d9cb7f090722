"""The command line's own promises: --version, an Examples block in every command's help whose
commands parse, and `serve`'s flags, its refusal of a missing --models folder and its start-up
report. (What each command does is tested with its module.)"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from img2img import __version__
from img2img.cli import app

REPO = Path(__file__).resolve().parent.parent
COMMANDS = (["train"], ["translate"], ["export"], ["serve"], ["eval"], ["datasets"], ["datasets", "list"], ["datasets", "download"])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m img2img ARGS` in a fresh process, as a user runs it (main()'s error handling included)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, "-m", "img2img", *args], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"img2img {__version__}"


def example_lines(command: list[str]) -> list[str]:
    r = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    assert "Examples:" in r.output, f"no Examples block in `img2img {' '.join(command)} --help`"
    lines = [line.strip() for line in r.output.split("Examples:", 1)[1].splitlines() if line.strip()]
    assert lines, command
    return lines


def parse(argv: list[str]) -> None:
    """Resolve `img2img ...` to its command and parse the options as click would (types, names,
    required ones), without running it."""
    cmd = typer.main.get_command(app)
    while hasattr(cmd, "commands"):  # a group (typer's own click, not necessarily `click`'s classes)
        name, argv = argv[0], argv[1:]
        assert name in cmd.commands, f"no command {name!r}"
        cmd = cmd.commands[name]
    cmd.make_context(cmd.name, list(argv))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples_that_parse(command):
    for line in example_lines(command):
        words = shlex.split(line.split(" #")[0])
        while "=" in words[0]:  # VAR=value before the command
            words.pop(0)
        if words[0] != "img2img" or "COMMAND" in words or "--help" in words:
            continue  # torchrun lines, and the top-level placeholder
        parse(words[1:])


def test_serve_refuses_a_missing_models_folder_in_the_terminal(tmp_path):
    """Exit 2 with one line, before Gradio even loads (not an empty page on a mistyped path)."""
    r = run_cli("serve", "--models", str(tmp_path / "nonexistent"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("img2img: error: --models ") and "does not exist" in r.stderr
    file = tmp_path / "model.onnx"
    file.write_bytes(b"x")
    r = run_cli("serve", "--models", str(file))
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_serve_takes_the_docker_flags_and_the_queue_limits(monkeypatch, tmp_path):
    """The Dockerfile's CMD: `img2img serve --host 0.0.0.0 --port 7860 --models /app/checkpoints`;
    without flags the UI binds to 127.0.0.1, with one translation at a time and 64 waiting."""
    import img2img.app
    from img2img.app import Limits

    calls = []
    monkeypatch.setattr(img2img.app, "serve", lambda models, **kw: calls.append((models, kw)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "models").mkdir()
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "7860", "--models", "models", "--queue-size", "100", "--concurrency", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["serve"])
    assert r.exit_code == 0, r.output
    assert calls == [
        (Path("models"), {"host": "0.0.0.0", "port": 7860, "device": "auto", "limits": Limits(queue_size=100, concurrency=2)}),
        (Path("checkpoints"), {"host": "127.0.0.1", "port": 7860, "device": "auto", "limits": Limits(queue_size=64, concurrency=1)}),
    ]
    assert Limits().queue_size >= 64 and Limits().concurrency == 1
    for bad in (["--queue-size", "0"], ["--concurrency", "0"]):
        assert runner.invoke(app, ["serve", *bad]).exit_code == 2


def test_serve_says_which_device_and_why():
    from img2img.app import device_line
    from img2img.devices import cpu_model, cuda_usable

    line = device_line("cpu", 3)
    assert line.startswith("device: CPU (--device cpu); ") and cpu_model() in line and "3 thread(s)" in line
    auto = device_line("auto", None)
    if cuda_usable():
        assert auto.startswith("device: CUDA GPU (a usable CUDA GPU was found)") or "no CUDA provider" in auto
    else:
        assert auto.startswith("device: CPU (no usable CUDA GPU found); ") or "no CUDA provider" in auto
