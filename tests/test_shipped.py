"""The models shipped in checkpoints/: complete, small, found by the UI, and they translate
real photos they never saw (scikit-image's) through the CLI, the Python API and the web UI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from conftest import needs_hed
from img2img.app import TAB_TASKS, SessionCache, build_app, discover_models, launch_app
from img2img.cli import app
from img2img.data.derived import luminance, xdog
from img2img.metrics import psnr
from img2img.runtime import Translator

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints" / "pretrained"
SHIPPED = {  # name -> (task, ONNX files)
    "colorization": ("colorization", ["colorization.onnx"]),
    "sketch2photo": ("sketch2photo", ["sketch2photo.onnx"]),
    "starry_night": ("style", ["starry_night_AtoB.onnx", "starry_night_BtoA.onnx"]),
}


def held_out(size: tuple[int, int] = (150, 100)) -> dict[str, np.ndarray]:
    """scikit-image photos, resized to a size that is not a multiple of any network's stride."""
    return {n: np.asarray(Image.fromarray(getattr(data, n)()).resize(size, Image.Resampling.LANCZOS)) for n in ("astronaut", "coffee")}


def saturation(rgb: np.ndarray) -> float:
    return float(np.asarray(Image.fromarray(rgb).convert("HSV"))[:, :, 1].mean())


@pytest.mark.parametrize("name", SHIPPED)
def test_each_model_ships_complete(name):
    task, onnx_files = SHIPPED[name]
    folder = CHECKPOINTS / name
    for f in [*onnx_files, "README.md", "config.yaml", "samples.jpg", "metrics.json", "G_AtoB.safetensors"]:
        assert (folder / f).is_file(), f"{folder / f} is missing"
    for f in onnx_files:
        assert Translator(folder / f).card.task == task
    card = (folder / "README.md").read_text()
    assert "## Quality" in card and "baseline (input)" in card
    metrics = json.loads((folder / "metrics.json").read_text())
    assert all(r["rows"][0]["name"] == "model" and r["rows"][1]["name"] == "baseline (input)" for r in metrics.values())


def test_shipped_models_are_small_and_found_by_the_ui():
    # Two ngf-32 U-Nets (each 30 MB of safetensors and a 42 MB ONNX file, whose decoder holds the
    # folded sub-pixel kernels: 16 weights for every 9) and a small CycleGAN pair.
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 200e6, f"checkpoints/ holds {total / 1e6:.0f} MB"
    by_tab, skipped = discover_models(CHECKPOINTS, TAB_TASKS)
    assert skipped == []
    assert [g.name for g in by_tab["colorization"]] == ["colorization"]
    assert [g.name for g in by_tab["sketch"]] == ["sketch2photo"]
    assert [g.name for g in by_tab["style"]] == ["starry_night"] and by_tab["style"][0].directions == ["AtoB", "BtoA"]


def test_colorization_colours_held_out_photos_and_keeps_their_detail():
    t = Translator(CHECKPOINTS / "colorization" / "colorization.onnx")
    for name, rgb in held_out().items():
        grey = luminance(rgb)
        out = t.translate_arrays([grey[:, :, None]])[0]
        assert out.shape == rgb.shape
        assert np.abs(luminance(out).astype(int) - grey).max() <= 2  # the photo's detail is kept
        assert saturation(out) > 15, f"{name}: output is nearly grey"  # it does add colour


def chroma_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |Cb, Cr difference| of two RGB images (BT.601, 0..255)."""
    cbcr = lambda x: np.asarray(Image.fromarray(x).convert("YCbCr"), dtype=float)[:, :, 1:]  # noqa: E731
    return float(np.abs(cbcr(a) - cbcr(b)).mean())


def test_colorization_colours_closer_to_the_truth_at_the_training_scale():
    """scikit-image's colour photos at their own size (400-640 px): coloured at WORK_SIZE
    (the scale the network learned colours at), their colours are nearer the originals' than
    coloured at full size (docs/evaluation.md: 14 of the 18 held-out photos gain)."""
    model = CHECKPOINTS / "colorization" / "colorization.onnx"
    at_scale, at_full = Translator(model), Translator(model, work_size=0)
    photos = [getattr(data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket")]
    errors = {t: np.mean([chroma_error(t.translate_arrays([luminance(p)[:, :, None]])[0], p) for p in photos])
              for t in (at_scale, at_full)}  # fmt: skip
    assert errors[at_scale] < errors[at_full] - 1, errors


def test_colorization_flip_average_colours_closer_to_the_truth():
    """The mean of the colours for a photo and for its mirror image (the default for
    colorization) is nearer the originals' colours than one pass (docs/evaluation.md: +0.28 dB
    PSNR, better FID and KID on the 18 held-out photos)."""
    model = CHECKPOINTS / "colorization" / "colorization.onnx"
    averaged, single = Translator(model), Translator(model, flip_average=False)
    photos = [getattr(data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket")]
    errors = {t: np.mean([chroma_error(t.translate_arrays([luminance(p)[:, :, None]])[0], p) for p in photos])
              for t in (averaged, single)}  # fmt: skip
    assert errors[averaged] < errors[single], errors


def test_sketch2photo_and_style_translate_held_out_photos():
    sketch_model = Translator(CHECKPOINTS / "sketch2photo" / "sketch2photo.onnx")
    style = Translator(CHECKPOINTS / "starry_night" / "starry_night_AtoB.onnx")
    for name, rgb in held_out().items():
        photo = np.asarray(sketch_model.translate([Image.fromarray(xdog(rgb))])[0])
        assert photo.shape == rgb.shape and saturation(photo) > 20
        # The painted photo differs from the photo but keeps its layout: still correlated.
        painted = style.translate_arrays([rgb])[0].astype(float)
        assert np.abs(painted - rgb).mean() > 30
        assert np.corrcoef(luminance(painted.astype(np.uint8)).ravel(), luminance(rgb).ravel())[0, 1] > 0.5


def test_sketch2photo_takes_the_colours_of_hints_painted_on_held_out_drawings():
    """Marks of each photo's own colours on its drawing (as `img2img eval --hints 8` paints them)
    bring the output closer to the photo: in PSNR, and in colour near the marks."""
    from img2img.evaluate import hinted

    model = Translator(CHECKPOINTS / "sketch2photo" / "sketch2photo.onnx")
    assert model.card.takes_colour_hints
    for name, rgb in held_out((300, 200)).items():
        drawing = xdog(rgb)
        marked = hinted(drawing, rgb, 8, name)
        bare, steered = (np.asarray(model.translate([Image.fromarray(x)])[0]) for x in (drawing, marked))
        assert psnr(steered, rgb) > psnr(bare, rgb) + 0.25, name  # dB (0.81 on the astronaut, 0.83 on the coffee)
        near = (marked != drawing[:, :, None]).any(axis=2)  # the marks themselves
        error = {k: np.abs(out[near].astype(float) - rgb[near]).mean() for k, out in (("bare", bare), ("steered", steered))}
        assert error["steered"] < 0.75 * error["bare"], (name, error)  # 0.67 and 0.35 of it


@needs_hed
def test_sketch2photo_draws_closer_to_the_photo_at_the_training_scale():
    """scikit-image's photos at their own size (451-640 px), HED drawings with 8 marks as
    `img2img eval --hints 8` makes them: drawn at WORK_SIZE, the scale the network learned at,
    each result is nearer its photo than drawn at full size (docs/evaluation.md: 14 of the 18
    held-out photos gain, these four by 0.57-0.74 dB)."""
    from img2img.data.derived import make_sketcher
    from img2img.evaluate import hinted

    model = CHECKPOINTS / "sketch2photo" / "sketch2photo.onnx"
    at_scale, at_full = Translator(model), Translator(model, work_size=0)
    sketch, gains = make_sketcher("hed"), []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        rgb = getattr(data, name)()
        marked = Image.fromarray(hinted(sketch(rgb), rgb, 8, f"skimage-{name}.png"))
        gains.append(psnr(np.asarray(at_scale.translate([marked])[0]), rgb) - psnr(np.asarray(at_full.translate([marked])[0]), rgb))
    assert min(gains) > 0.2, gains  # dB


def test_cli_translates_with_shipped_models(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name, rgb in held_out((130, 90)).items():
        Image.fromarray(rgb).save(src / f"{name}.png")
    for name, (_, onnx_files) in SHIPPED.items():
        out = tmp_path / name
        result = CliRunner().invoke(app, ["translate", "--model", str(CHECKPOINTS / name / onnx_files[0]),
                                          "--input", str(src), "--output", str(out), "--no-progress"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "coffee.png"]
        assert all(Image.open(p).size == (130, 90) and Image.open(p).mode == "RGB" for p in out.iterdir())


def test_web_ui_serves_shipped_models(tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file

    from test_app import free_port

    demo = build_app(CHECKPOINTS, sessions=SessionCache(threads=2), examples_dir=tmp_path / "examples")
    url = launch_app(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False)
        rgb = held_out((120, 84))["coffee"]
        inputs = {"photo": rgb, "grey": luminance(rgb), "sketch": xdog(rgb)}
        for api_name, kind, args in [
            ("/colorize", "grey", ()),
            ("/sketch_to_photo", "sketch", ()),
            ("/style_transfer", "photo", ("starry_night", "AtoB")),
        ]:  # fmt: skip
            path = tmp_path / f"{kind}.png"
            Image.fromarray(inputs[kind]).save(path)
            out = Image.open(client.predict(handle_file(str(path)), *args, api_name=api_name))
            assert out.size == (120, 84) and out.mode == "RGB"
            assert np.asarray(out).std() > 5
    finally:
        demo.close()
