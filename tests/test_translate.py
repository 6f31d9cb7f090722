"""`img2img translate` (img2img.batch): folders, globs and files of real photos in mixed sizes
and modes, with a corrupt file and a text file among them."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from conftest import save_run
from img2img import Img2ImgError, batch
from img2img.batch import collect_inputs, output_paths, save_image, translate_files
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


def small_photo(path: Path, name: str = "astronaut", size: tuple[int, int] = (40, 30), **save) -> Path:
    Image.fromarray(getattr(data, name)()).resize(size).save(path, **save)
    return path


def refused(result) -> str:
    """The Img2ImgError message of a refused command (exit 2 from main(), an exception here)."""
    assert isinstance(result.exception, Img2ImgError), (result.exception, result.output)
    return str(result.exception)


def test_inputs_that_yield_nothing_say_what_was_found(model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".a.png").write_bytes(b"hidden files are skipped")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    broken = tmp_path / "gone.png"
    broken.symlink_to(tmp_path / "nowhere.png")
    for path, why in [
        (empty, "the folder is empty"), (hidden, "no images in the folder"),
        (fifo, "not a regular file (a FIFO)"), (broken, f"broken link to {tmp_path / 'nowhere.png'}"),
    ]:  # fmt: skip
        result = invoke("--model", str(model[1]), "-i", str(path), "-o", str(tmp_path / "out"))
        assert f"no input images: {path}: {why}" in refused(result)
    # Among images, special files and broken links are listed with the failures; the rest is translated.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    small_photo(mixed / "a.png")
    os.mkfifo(mixed / "p.png")
    (mixed / "l.png").symlink_to(mixed / "missing.png")
    result = invoke("--model", str(model[1]), "-i", str(mixed), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and written(tmp_path / "out") == {"a.png": (40, 30)}
    assert f"{mixed / 'p.png'}: not a regular file (a FIFO)" in result.stderr
    assert f"{mixed / 'l.png'}: broken link to {mixed / 'missing.png'}" in result.stderr


def test_outputs_never_replace_inputs(model, tmp_path):
    """`-i D -o D --overwrite` would translate the PNGs over themselves: refused before anything
    is written, also through a link to D and for a hard link to an input."""
    d = tmp_path / "d"
    d.mkdir()
    small_photo(d / "a.png")
    small_photo(d / "b.jpg", "coffee")
    (tmp_path / "link").symlink_to(d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    for out in (d, tmp_path / "link"):
        result = invoke("--model", str(model[1]), "-i", str(d), "-o", str(out), "--overwrite")
        assert f"the output {out / 'a.png'} would replace the input {d / 'a.png'}" in refused(result)
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # not even b.png was written
    other = tmp_path / "other"
    other.mkdir()
    os.link(d / "a.png", other / "a.png")
    result = invoke("--model", str(model[1]), "-i", str(d / "a.png"), "-o", str(other), "--overwrite")
    assert "would replace the input" in refused(result) and (d / "a.png").read_bytes() == before["a.png"]
    # No output is an input: the same folder is fine.
    result = invoke("--model", str(model[1]), "-i", str(d / "b.jpg"), "-o", str(d))
    assert result.exit_code == 0 and (d / "b.png").is_file()


def test_output_folder_is_checked_before_translating(model, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder would be")
    monkeypatch.setattr(Translator, "translate_arrays", lambda *a, **k: pytest.fail("translated before the check"))
    src = small_photo(tmp_path / "a.png")
    for out, why in [(blocker, f"the output {blocker} is a file, not a folder"),
                     (blocker / "sub", f"cannot write into the output folder {blocker / 'sub'} (Not a directory)")]:
        result = invoke("--model", str(model[1]), "-i", str(src), "-o", str(out))
        assert why in refused(result)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = invoke("--model", str(model[1]), "-i", str(src), "-o", str(locked))
        assert f"cannot write into the output folder {locked} (Permission denied)" in refused(result)


def corrupt_exif() -> bytes:
    """An EXIF block whose first IFD declares 3 entries and holds 1: Pillow warns "Corrupt EXIF
    data" when it reads the orientation, and the image itself is fine."""
    ifd = struct.pack("<2sHIH", b"II", 42, 8, 3) + struct.pack("<HHI4s", 0x0112, 3, 1, b"\x01\x00\x00\x00")
    return b"Exif\x00\x00" + ifd


def test_decoder_warnings_become_one_line_notes(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        small_photo(src / name, exif=corrupt_exif())
    with warnings.catch_warnings(record=True) as escaped:  # what would reach stderr as raw warnings
        warnings.simplefilter("always")
        result = invoke("--model", str(model[1]), "-i", str(src), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("img2img: ONNX Runtime ")  # Translator.describe(), at start
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    message = "the decoder warned: Corrupt EXIF data. Expecting to read 12 bytes but only got 0."
    assert notes == [f"img2img: note: {src / name}: {message}" for name in ("a.jpg", "b.jpg")]
    assert [str(w.message) for w in escaped if "EXIF" in str(w.message)] == []


def test_progress_bar_advances_within_a_tiled_image(model, tmp_path, monkeypatch):
    """A large image moves the bar tile by tile (fractions of an image), so its ETA is real."""
    import tqdm

    steps: list[float] = []

    class Bar(tqdm.tqdm):
        def update(self, n=1):
            steps.append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    src = tmp_path / "in"
    src.mkdir()
    small_photo(src / "big.png", size=(300, 200))
    small_photo(src / "small.png", "coffee")
    jobs, _ = collect_inputs([src])
    report = translate_files(Translator(model[1], tile=64), jobs, tmp_path / "out")
    assert len(report.written) == 2
    moves = [n for n in steps if n]
    assert len(moves) > 10 and all(0 < n < 1 for n in moves[:-1])  # the big image, pass by pass
    assert sum(moves) == pytest.approx(2)


def test_large_images_are_translated_alone(model, tmp_path, monkeypatch):
    """Small images are decoded while others are translated; images over PIPELINE_PIXELS are
    not, nor encoded then: one large image in memory at a time."""
    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        small_photo(src / f"{k}.png", name)
    started: list[Path] = []
    real_load, real_save = batch.load_image, batch.save_image
    monkeypatch.setattr(batch, "load_image", lambda path, *a, **k: started.append(path) or real_load(path, *a, **k))
    encoding = []  # saves under way

    def save_image(*args):
        encoding.append(1)
        time.sleep(0.3)  # an encoding that takes a while
        real_save(*args)
        encoding.pop()

    monkeypatch.setattr(batch, "save_image", save_image)
    tr = Translator(model[1])
    real_translate, ahead, given, saves = tr.translate_arrays, [], [], []

    def translate_arrays(arrays, *args, **kwargs):
        time.sleep(0.2)  # time for decoding that runs ahead, if any, to start
        given.append(len(arrays))
        ahead.append(len(started) - sum(given))
        saves.append(len(encoding))
        return real_translate(arrays, *args, **kwargs)

    tr.translate_arrays = translate_arrays
    jobs, _ = collect_inputs([src])
    translate_files(tr, jobs, tmp_path / "small", progress=False)
    assert max(ahead) >= 1 and max(saves) >= 1
    started.clear(), ahead.clear(), given.clear(), saves.clear()
    monkeypatch.setattr(batch, "header_pixels", lambda path: 16_000_001, raising=False)  # over half of PIPELINE_PIXELS
    report = translate_files(tr, jobs, tmp_path / "large", progress=False)
    assert ahead == [0, 0, 0, 0] and saves == [0, 0, 0, 0] and len(report.written) == 4


# Runs the CLI and writes its peak RSS (VmHWM, kB) to argv[1] at exit. Not wait4's ru_maxrss: a
# child's maxrss starts from its parent's at fork and survives exec, so it would read pytest's.
PEAK_RSS_CLI = """
import atexit, sys
path = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as f:
        open(path, "w").write(next(line.split()[1] for line in f if line.startswith("VmHWM")))
atexit.register(peak)
from img2img.cli import main
main()
"""


def peak_rss_mb(args: list[str], tmp_path: Path) -> float:
    """Peak RSS of `img2img translate ARGS` in a child process, in MB."""
    out = tmp_path / "peak_kb"
    cmd = [sys.executable, "-c", PEAK_RSS_CLI, str(out), "translate", *args, "--no-progress"]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(out.read_text()) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_large_image_memory_is_bounded(model, tmp_path):
    """A 12 Mpx photo (sides not multiples of the stride: padded) through the CLI with 1024 px
    tiles, against a small image's run: at most the tiled path's fixed cost for this model
    (ONNX Runtime's buffers for one tile and the derived sessions, about 150 MB measured) and
    12 bytes a pixel (input and output, 3 each, and the accumulator strip, about 4 here). One
    float32 copy of the image would add 12 bytes a pixel by itself; a padded copy, Pillow's
    double copy or a fragmented heap show here too (the code before issue 13: 406 MB more than
    the small run, 265 MB after; the bound is 297 MB)."""
    w, h = 4001, 3001
    big = small_photo(tmp_path / "big.jpg", "coffee", (w, h), quality=90)
    small = small_photo(tmp_path / "small.jpg", "coffee", (64, 48))
    common = ["-m", str(model[1]), "-o", str(tmp_path / "out"), "--format", "jpg"]
    base = peak_rss_mb([*common, "-i", str(small)], tmp_path)
    peak = peak_rss_mb([*common, "-i", str(big)], tmp_path)
    assert Image.open(tmp_path / "out" / "big.jpg").size == (w, h)
    assert peak - base < 160 + 12 * w * h / 2**20, f"peak {peak:.0f} MB, {base:.0f} MB for a small image"
