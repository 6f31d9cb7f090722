"""`img2img translate` (img2img.batch): folders, globs and files of real photos in mixed sizes
and modes, with a corrupt file and a text file among them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from conftest import save_run
from img2img.batch import collect_inputs, output_paths, save_image
from img2img.cli import app
from img2img.export import export_onnx
from img2img.runtime import Translator

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """(run dir, exported .onnx) of a tiny generator."""
    root = tmp_path_factory.mktemp("model")
    run = save_run(root / "run", ["model.ngf=4", "model.n_blocks=1"])
    return run, export_onnx(run, root / "g.onnx").path


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of real photos in mixed sizes and modes, plus two bad files."""
    src = tmp_path / "photos"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(data.astronaut()).resize((97, 83)).save(src / "astronaut.png")
    Image.fromarray(data.coffee()).resize((120, 80)).save(src / "sub" / "coffee.jpg", quality=90)
    rgba = Image.fromarray(data.chelsea()).resize((64, 50)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(src / "sub" / "deeper" / "chelsea_rgba.png")
    Image.fromarray(data.camera()).resize((45, 61)).save(src / "camera_grey.png")  # mode L
    good = (src / "astronaut.png").read_bytes()
    (src / "broken.png").write_bytes(good[: len(good) // 3])  # truncated
    (src / "notes.txt").write_text("not an image\n")
    (src / ".hidden.png").write_bytes(b"ignored: hidden files are not inputs")
    return src


GOOD = {"astronaut.png": (97, 83), "sub/coffee.png": (120, 80), "sub/deeper/chelsea_rgba.png": (64, 50), "camera_grey.png": (45, 61)}


def invoke(*args: str):
    return CliRunner().invoke(app, ["translate", *args, "--no-progress"])


def written(out: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(out).as_posix(): Image.open(p).size for p in sorted(out.rglob("*")) if p.is_file()}


def test_folder_with_bad_files(model, photos, tmp_path):
    out = tmp_path / "out"
    result = invoke("--model", str(model[1]), "--input", str(photos), "--output", str(out))
    assert result.exit_code == 1, result.output
    # Every good image is written, same relative path and size, as RGB PNG.
    assert written(out) == GOOD
    assert all(Image.open(out / name).mode == "RGB" for name in GOOD)
    # The bad ones are listed with their reasons; no temp files are left behind.
    err = result.stderr
    assert "2 input(s) could not be translated" in err
    assert "broken.png" in err and "notes.txt" in err and "not an image" in err
    assert ".hidden" not in result.output
    assert not list(out.rglob(".*"))
    assert "translated 4 image(s)" in result.stdout

    # Existing outputs are kept without --overwrite ...
    marker = out / "astronaut.png"
    marker.write_bytes(b"keep me")
    result = invoke("--model", str(model[1]), "--input", str(photos), "--output", str(out))
    assert result.exit_code == 1 and marker.read_bytes() == b"keep me"
    assert "kept 4 existing" in result.stdout
    # ... and replaced with it.
    result = invoke("--model", str(model[1]), "--input", str(photos), "--output", str(out), "--overwrite")
    assert result.exit_code == 1 and Image.open(marker).size == (97, 83)


def test_globs_files_jpg_and_torch_backend(model, photos, tmp_path):
    out = tmp_path / "out"
    # A glob keeps paths relative to its fixed prefix; extra paths may follow one --input.
    result = invoke(
        "--model", str(model[0]), "--backend", "torch", "--input", str(photos / "**" / "*.png"),
        str(photos / "sub" / "coffee.jpg"), "--output", str(out), "--format", "jpg", "--batch-size", "2", "--tile", "64",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # broken.png matches the glob
    assert written(out) == {
        "astronaut.jpg": (97, 83), "camera_grey.jpg": (45, 61), "sub/deeper/chelsea_rgba.jpg": (64, 50), "coffee.jpg": (120, 80),
    }  # fmt: skip
    assert "torch on cpu" in result.stdout
    # The files were translated in 64 px tiles: what the Translator gives with those tiles,
    # saved the same way, and not what a whole-image pass gives.
    src = Image.open(photos / "sub" / "coffee.jpg")
    tiled = Translator(model[0], tile=64).translate([src])[0]
    whole = Translator(model[0], tile=None).translate([src])[0]
    save_image(tiled, tmp_path / "expected.jpg", "jpg")
    assert (out / "coffee.jpg").read_bytes() == (tmp_path / "expected.jpg").read_bytes()
    assert not np.array_equal(np.asarray(tiled), np.asarray(whole))


def test_all_good_exits_zero_and_matches_the_translator(model, photos, tmp_path):
    out = tmp_path / "out"
    result = invoke("--model", str(model[1]), "-i", str(photos / "astronaut.png"), "-o", str(out))
    assert result.exit_code == 0, result.output
    expected = Translator(model[1]).translate([Image.open(photos / "astronaut.png")])[0]
    assert np.array_equal(np.asarray(Image.open(out / "astronaut.png")), np.asarray(expected))


def test_nothing_to_do_is_an_error(model, tmp_path):
    result = invoke("--model", str(model[1]), "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"))
    assert result.exit_code != 0 and "no such file or folder" in str(result.exception)


def test_unknown_format_is_refused_before_the_model_loads(tmp_path):
    result = invoke("--model", str(tmp_path / "missing.onnx"), "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--format", "gif")
    assert result.exit_code != 0 and "unknown output format 'gif'; choose png or jpg" in str(result.exception)


def test_output_name_collisions_keep_both(tmp_path):
    (tmp_path / "a.jpg").touch()
    (tmp_path / "a.png").touch()
    jobs, problems = collect_inputs([tmp_path])
    assert problems == []
    names = [p.name for p in output_paths(jobs, tmp_path / "out", ".png")]
    assert names == ["a.png", "a.png.png"]


def test_module_entry_point_exit_code(model, photos, tmp_path):
    """`python -m img2img translate` prints the failures and exits 1 (not a traceback)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "img2img", "translate", "-m", str(model[1]), "-i", str(photos), "-o", str(tmp_path / "o"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "broken.png" in proc.stderr and "Traceback" not in proc.stderr
    assert len(list((tmp_path / "o").rglob("*.png"))) == 4
