import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import photo
from img2img import Img2ImgError
from img2img.config import load_config
from img2img.data.datasets import ResumableSampler, build_dataset
from img2img.data.derived import canny, luminance, xdog
from img2img.data.images import ImageReadError, load_image


def cfg_for(preset, *extra):
    return load_config(preset, ["data.load_size=40", "data.crop_size=32", *extra]).data


def test_paired_side_by_side_is_split_and_aligned(data_root, log):
    ds = build_dataset(cfg_for("pix2pix"), data_root / "paired", seed=0, log=log)
    assert len(ds) == 5
    item = ds[3]
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    # A is the grey version of B: same crop and flip, so luminance matches closely.
    lum = (0.299 * item["B"][0] + 0.587 * item["B"][1] + 0.114 * item["B"][2])
    assert (item["A"][0] - lum).abs().mean() < 0.05


def test_paired_a_b_folders_matched_by_name(data_root, log):
    ds = build_dataset(cfg_for("pix2pix"), data_root / "paired_ab", seed=0, log=log)
    assert len(ds) == 5 and ds[0]["A"].shape == (3, 32, 32)


def test_direction_btoa_swaps(data_root, log):
    ab = build_dataset(cfg_for("pix2pix"), data_root / "paired", seed=0, log=log)[1]
    ba = build_dataset(cfg_for("pix2pix", "data.direction=BtoA"), data_root / "paired", seed=0, log=log)[1]
    assert torch.equal(ab["A"], ba["B"]) and torch.equal(ab["B"], ba["A"])


def test_same_key_same_sample_new_epoch_new_crop(data_root, log):
    ds = build_dataset(cfg_for("pix2pix"), data_root / "paired", seed=0, log=log)
    assert torch.equal(ds[2]["A"], ds[2]["A"])
    assert not torch.equal(ds[2]["B"], ds[2 + len(ds)]["B"])  # same image, next epoch


def test_mismatched_names_are_listed(tmp_path, data_root, log):
    shutil.copytree(data_root / "paired_ab", tmp_path / "d")
    (tmp_path / "d/train/B/coffee.png").rename(tmp_path / "d/train/B/coffee2.png")
    with pytest.raises(Img2ImgError, match=r"only in A: \['coffee'\], only in B: \['coffee2'\]"):
        build_dataset(cfg_for("pix2pix"), tmp_path / "d", seed=0, log=log)


def test_empty_and_missing_folders(tmp_path, log):
    (tmp_path / "train/AB").mkdir(parents=True)
    with pytest.raises(Img2ImgError, match="no readable images"):
        build_dataset(cfg_for("pix2pix"), tmp_path, seed=0, log=log)
    with pytest.raises(Img2ImgError, match="trainA"):
        build_dataset(cfg_for("cyclegan"), tmp_path, seed=0, log=log)
    with pytest.raises(Img2ImgError, match="does not exist"):
        build_dataset(cfg_for("pix2pix"), tmp_path / "nope", seed=0, log=log)


def test_unreadable_image_is_skipped_or_fatal_when_strict(tmp_path, data_root, log, caplog):
    shutil.copytree(data_root / "photos", tmp_path / "p")
    (tmp_path / "p/notes.jpg").write_text("this is not a jpeg")
    ds = build_dataset(cfg_for("colorization"), tmp_path / "p", seed=0, log=log)
    assert len(ds) == 5
    assert "notes.jpg" in caplog.text and "skipping 1 unreadable" in caplog.text
    with pytest.raises(ImageReadError, match="notes.jpg"):
        build_dataset(cfg_for("colorization", "data.strict=true"), tmp_path / "p", seed=0, log=log)


def test_truncated_image_is_skipped_at_load_time(tmp_path, log, caplog):
    (tmp_path / "p").mkdir()
    photo("astronaut", 64).save(tmp_path / "p/a.png")
    photo("coffee", 64).save(tmp_path / "p/b.jpg", quality=95)
    data = (tmp_path / "p/b.jpg").read_bytes()
    (tmp_path / "p/b.jpg").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    ds = build_dataset(cfg_for("colorization"), tmp_path / "p", seed=0, log=log)
    items = [ds[k] for k in range(4)]
    assert all(i["B"].shape == (3, 32, 32) for i in items)
    assert "b.jpg" in caplog.text


def test_image_smaller_than_crop(tmp_path, log):
    (tmp_path / "train/AB").mkdir(parents=True)
    photo("rocket", 16).save(tmp_path / "train/AB/small.png")
    with pytest.raises(Img2ImgError, match="small.png is 16x16, smaller than data.crop_size=32"):
        build_dataset(cfg_for("pix2pix", "data.preprocess=crop"), tmp_path, seed=0, log=log)


def test_unpaired_dataset(data_root, log):
    ds = build_dataset(cfg_for("cyclegan"), data_root / "unpaired", seed=0, log=log)
    assert len(ds) == 3  # max(|A|=3, |B|=2)
    assert ds[0]["A"].shape == ds[0]["B"].shape == (3, 32, 32)


@pytest.mark.parametrize("preset", ["colorization", "sketch2photo"])
def test_derived_pairs_are_aligned(preset, data_root, log):
    ds = build_dataset(cfg_for(preset), data_root / "photos", seed=0, log=log)
    item = ds[0]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    # Recompute A from the augmented B: identical crop/flip means they agree.
    b = ((item["B"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    if preset == "colorization":
        assert np.abs(luminance(b) / 127.5 - 1 - item["A"][0].numpy()).mean() < 0.02


def test_sketch_extractors_draw_dark_lines_on_white():
    rgb = np.asarray(photo("astronaut", 128))
    for fn in (xdog, canny):
        s = fn(rgb)
        assert s.shape == (128, 128) and s.dtype == np.uint8
        assert np.median(s) == 255 and (s < 128).mean() > 0.01  # mostly paper, some ink
        # Lines follow edges: ink lies near the photo's strongest gradients far more than elsewhere.
        grad = np.hypot(*np.gradient(luminance(rgb).astype(float)))
        near = cv2.dilate((grad > np.percentile(grad, 90)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        ink = s < 128
        assert ink[near].mean() > 2 * ink[~near].mean()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16", "CMYK", "1"])
def test_loader_converts_every_mode_to_rgb(tmp_path, mode):
    src = photo("chelsea", 40)
    if mode == "I;16":
        img = Image.fromarray((np.asarray(src.convert("L")).astype(np.uint16) * 257))
    else:
        img = src.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 40)
    if mode in ("L", "I;16"):
        assert np.abs(np.asarray(out)[..., 0].astype(int) - np.asarray(src.convert("L"))).max() <= 1


def test_loader_composites_alpha_on_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.save(tmp_path / "t.png")
    assert np.asarray(load_image(tmp_path / "t.png"))[0, 0].tolist() == [255, 255, 255]


def test_loader_honours_exif_orientation(tmp_path):
    img = photo("rocket", 40).crop((0, 0, 40, 20))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 40)


def test_loader_errors_name_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match="x.png"):
        load_image(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match="more than 100 pixels"):
        photo("coffee", 40).save(tmp_path / "big.png")
        load_image(tmp_path / "big.png", max_pixels=100)


def test_sampler_resumes_mid_epoch_and_shards_for_ddp(data_root, log):
    ds = build_dataset(cfg_for("pix2pix"), data_root / "paired", seed=0, log=log)

    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(ResumableSampler(ds, 2, seed=3), 8)  # 2 steps/epoch of 2
    assert take(ResumableSampler(ds, 2, seed=3, start_step=3), 2) == full[6:8]
    assert {k % 5 for k in full[:4]} != {k % 5 for k in full[4:8]} or full[:4] != full[4:8]
    r0 = take(ResumableSampler(ds, 1, seed=3, rank=0, world_size=2), 2)
    r1 = take(ResumableSampler(ds, 1, seed=3, rank=1, world_size=2), 2)
    assert not set(r0) & set(r1)
    with pytest.raises(Img2ImgError, match="cannot fill one batch"):
        ResumableSampler(ds, 8, seed=0)
