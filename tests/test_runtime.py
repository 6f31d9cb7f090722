"""The Translator (img2img.runtime): both backends, any size and mode, grey-input models, tiling
through each backend. The tiling arithmetic itself is tested in test_runtime_tiling.py."""

from __future__ import annotations

import gc
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import save_run
from img2img import Img2ImgError, metrics
from img2img.data.derived import luminance
from img2img.devices import cuda_usable, native_bf16
from img2img.export import export_onnx
from img2img.nets.generators import build_generator
from img2img.runtime import Translator, restore_luminance
from img2img.runtime.pixels import resize_to

REPO = Path(__file__).resolve().parent.parent
TINY_RESNET = ["model.ngf=8", "model.n_blocks=1", "data.crop_size=64", "data.load_size=72"]


def photo(name: str, size: tuple[int, int] | None = None) -> Image.Image:
    img = Image.fromarray(getattr(data, name)())
    return img.resize(size, Image.Resampling.BICUBIC) if size else img


def psnr(a: Image.Image, b: Image.Image) -> float:
    return metrics.psnr(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> tuple[Path, Path]:
    """(run dir, exported .onnx) of a tiny instance-norm ResNet generator."""
    root = tmp_path_factory.mktemp("resnet")
    run = save_run(root / "run", TINY_RESNET)
    return run, export_onnx(run, root / "resnet.onnx").path


# ---------------------------------------------------------------------------- sizes and modes


def test_any_size_keeps_its_size(resnet):
    tr = Translator(resnet[1])
    assert tr.backend == "onnx" and tr.card.size_multiple == 4
    sizes = [(53, 37), (5, 3), (1, 1), (64, 64), (67, 130)]  # (W, H); 1x1 and 3x5 are below min_size
    outs = tr.translate([photo("astronaut", s) for s in sizes])
    assert [o.size for o in outs] == sizes and all(o.mode == "RGB" for o in outs)


def test_padding_is_reflection_cropped_back(resnet):
    """37x53 is padded to 40x56 with reflection (split evenly), translated, and cropped."""
    tr = Translator(resnet[1])
    img = photo("coffee", (53, 37))
    x = np.pad(np.asarray(img), ((1, 2), (1, 2), (0, 0)), mode="reflect")
    y = tr.run_batch((x.transpose(2, 0, 1)[None] / 127.5 - 1).astype(np.float32))[0, :, 1:38, 1:54]
    expected = np.clip((y.transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(tr.translate([img])[0]), expected)


@pytest.mark.parametrize("tile", [None, 48])
def test_onnx_and_torch_backends_agree(resnet, tile):
    """Whole, and tiled: there every instance norm normalizes by the shared statistics (ONNX
    Runtime: a rewritten graph; PyTorch: the layers' forward swapped for batch norm)."""
    run, onnx_path = resnet
    img = photo("astronaut", (90, 70))
    a = Translator(onnx_path, tile=tile).translate([img])[0]
    b = Translator(run, backend="torch", precision="fp32", tile=tile).translate([img])[0]
    assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


@pytest.mark.skipif(native_bf16() is None, reason="this CPU has no native bf16 (AMX or AVX512-BF16)")
def test_bf16_is_chosen_where_native_and_keeps_40_db_on_real_photos(resnet):
    """The fast path on such CPUs: the torch backend's auto precision is bf16, and its output
    stays within the 40 dB quality bar against fp32 on real photos, whole and tiled."""
    run, _ = resnet
    fast, exact = Translator(run, backend="torch", tile=96), Translator(run, backend="torch", precision="fp32", tile=96)
    assert f"bf16 autocast ({native_bf16()})" in fast.describe() and "fp32" in exact.describe()
    for img in (photo("chelsea", (160, 120)), photo("coffee", (96, 72)), photo("astronaut", (64, 64))):
        assert psnr(fast.translate([img])[0], exact.translate([img])[0]) >= 40


def test_cpu_without_native_bf16_falls_back_to_fp32(resnet, monkeypatch):
    """auto on a CPU without native bf16 is fp32, silently and exactly; bf16 asked for is refused."""
    from img2img.runtime import backends

    run, _ = resnet
    monkeypatch.setattr(backends, "cpu_bf16_support", lambda: None)
    img = photo("astronaut", (90, 70))
    auto = Translator(run, backend="torch")
    assert auto.describe().endswith("threads, fp32, tiles of 1024 px")
    exact = Translator(run, backend="torch", precision="fp32")
    assert np.array_equal(np.asarray(auto.translate([img])[0]), np.asarray(exact.translate([img])[0]))
    with pytest.raises(Img2ImgError, match="native bf16"):
        Translator(run, backend="torch", precision="bf16")
    with pytest.raises(Img2ImgError, match="auto, fp32, bf16"):
        Translator(run, backend="torch", precision="fp16")


def test_bf16_on_cuda_is_refused_with_the_cuda_reason(resnet, monkeypatch):
    """bf16 is the CPU path; on CUDA the backend runs fp32 and says so rather than blaming the CPU."""
    from img2img.runtime import backends

    monkeypatch.setattr(backends, "resolve_device", lambda device: "cuda")
    with pytest.raises(Img2ImgError, match="on CUDA the PyTorch backend runs in fp32"):
        Translator(resnet[0], backend="torch", precision="bf16")


def shipped_layout(tmp_path: Path, onnx_path: Path, weights: Path) -> Path:
    """An .onnx with its generator's safetensors beside it, as the shipped models are laid out."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(onnx_path, folder / "model.onnx")
    shutil.copy(weights, folder / "G_AtoB.safetensors")
    return folder / "model.onnx"


@pytest.mark.skipif(native_bf16() is None, reason="this CPU has no native bf16 (AMX or AVX512-BF16)")
def test_auto_backend_takes_the_measured_faster_path_once(resnet, tmp_path, monkeypatch):
    """backend auto for an .onnx with its safetensors beside it: both paths are timed on the
    probe, the verdict is cached, and the Translator runs (and names) the path it chose."""
    from img2img.runtime import choice

    run, onnx_path = resnet
    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path / "cache"))
    model = shipped_layout(tmp_path, onnx_path, run / "G_AtoB.safetensors")
    tr = Translator(model)
    entries = json.loads((tmp_path / "cache" / choice.CACHE_FILE).read_text())
    (verdict,) = entries.values()
    assert tr.backend == verdict["backend"] and verdict["psnr_db"] >= 40  # same weights: both paths agree
    assert "chosen by measurement at 256 px" in tr.describe()
    img = photo("chelsea", (120, 90))
    same = Translator(model, backend="onnx") if tr.backend == "onnx" else Translator(run, backend="torch")
    assert np.array_equal(np.asarray(tr.translate([img])[0]), np.asarray(same.translate([img])[0]))

    def no_measuring(*args):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(choice, "measure", no_measuring)
    again = Translator(model)
    assert again.backend == tr.backend and "chosen by measurement (cached)" in again.describe()


@pytest.mark.skipif(native_bf16() is None, reason="this CPU has no native bf16 (AMX or AVX512-BF16)")
def test_auto_backend_keeps_onnx_when_the_weights_beside_differ(resnet, tmp_path, monkeypatch):
    """The quality bar: safetensors of the same architecture but other weights give outputs far
    from the .onnx's, so ONNX Runtime stays whatever the timing."""
    from img2img.runtime import choice

    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path / "cache"))
    other = save_run(tmp_path / "other", TINY_RESNET, seed=7)
    tr = Translator(shipped_layout(tmp_path, resnet[1], other / "G_AtoB.safetensors"))
    assert tr.backend == "onnx" and "ONNX Runtime fp32 chosen" in tr.describe()
    psnr_db = float(re.search(r"([\d.]+) dB apart", tr.describe()).group(1))
    assert psnr_db < choice.MIN_PSNR


def test_auto_backend_without_a_candidate_is_onnx_unmeasured(resnet, tmp_path, monkeypatch):
    """No native bf16, fp32 asked for, or no safetensors beside: ONNX Runtime, nothing timed or cached."""
    from img2img.runtime import choice

    run, onnx_path = resnet
    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path / "cache"))
    model = shipped_layout(tmp_path, onnx_path, run / "G_AtoB.safetensors")
    assert Translator(model, precision="fp32").backend_choice == ""
    assert Translator(onnx_path).backend_choice == ""  # nothing beside the exported file
    monkeypatch.setattr(choice, "native_bf16", lambda: None)
    tr = Translator(model)
    assert tr.backend == "onnx" and tr.backend_choice == "" and "chosen" not in tr.describe()
    assert not (tmp_path / "cache").exists()


def test_batches_of_mixed_sizes_match_one_by_one(resnet):
    images = [photo("astronaut", (64, 48)), photo("coffee", (50, 30)), photo("chelsea", (64, 48)), photo("rocket", (64, 48))]
    one = Translator(resnet[1], batch_size=1).translate(images)
    many = Translator(resnet[1], batch_size=3).translate(images)
    for a, b in zip(one, many):
        assert a.size == b.size and np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


def test_modes_alpha_and_exif(resnet):
    tr = Translator(resnet[1])
    rgb = photo("chelsea", (60, 44))
    # Transparent pixels are composited on white, like load_image does.
    rgba = rgb.convert("RGBA")
    alpha = np.full((44, 60), 255, np.uint8)
    alpha[:, :30] = 0
    rgba.putalpha(Image.fromarray(alpha))
    white_left = np.asarray(rgb).copy()
    white_left[:, :30] = 255
    assert np.array_equal(np.asarray(tr.translate([rgba])[0]), np.asarray(tr.translate([Image.fromarray(white_left)])[0]))
    # Grey, palette and 16-bit inputs become RGB.
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)  # mode I;16
    for img in (rgb.convert("L"), rgb.convert("P"), grey16, rgb.convert("LA")):
        assert tr.translate([img])[0].size == (60, 44)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the output is upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", exif=exif.tobytes())
    assert tr.translate([Image.open(io.BytesIO(buf.getvalue()))])[0].size == (44, 60)


def test_grey_input_model_gets_luma(tmp_path):
    """Colorization models take one channel: RGB input is reduced to BT.601 luma first."""
    run = save_run(tmp_path / "run", [*TINY_RESNET, "model.ngf=4", "data.kind=colorization", "model.input_nc=1"])
    tr = Translator(run)
    assert tr.backend == "torch" and tr.card.input_channels == 1 and tr.card.task == "colorization"
    img = photo("astronaut", (48, 40))
    from_rgb, from_grey, from_grey_rgb = tr.translate([img, img.convert("L"), img.convert("L").convert("RGB")])
    assert from_rgb.mode == "RGB" and from_rgb.size == (48, 40)
    assert np.array_equal(np.asarray(from_rgb), np.asarray(from_grey))
    assert np.array_equal(np.asarray(from_rgb), np.asarray(from_grey_rgb))
    # The output keeps the input's luma exactly (up to rounding and clipping); the untouched
    # network output does not.
    grey = np.asarray(img.convert("L")).astype(int)
    luma = np.asarray(from_rgb.convert("L")).astype(int)
    assert np.abs(luma - grey).max() <= 2
    raw = Translator(run, keep_luminance=False).translate([img])[0]
    assert np.abs(np.asarray(raw.convert("L")).astype(int) - grey).mean() > 10


def test_colorization_colours_a_copy_at_work_size(tmp_path):
    """Colorization runs the network on a copy whose short side is work_size and puts the
    enlarged colours under the full-size luma; smaller images are coloured at their own size."""
    run = save_run(tmp_path / "run", [*TINY_RESNET, "model.ngf=4", "data.kind=colorization", "model.input_nc=1"])
    img = photo("rocket", (96, 64))
    grey = np.asarray(img.convert("L"))
    out = np.asarray(Translator(run, work_size=32, flip_average=False).translate([img])[0])
    assert out.shape == (64, 96, 3) and np.abs(luminance(out).astype(int) - grey).max() <= 2
    small = Translator(run, keep_luminance=False).translate([img.convert("L").resize((48, 32), Image.Resampling.BICUBIC)])[0]
    expected = restore_luminance(grey, resize_to(np.asarray(small), 64, 96))
    assert np.abs(out.astype(int) - expected).max() <= 1
    full = np.asarray(Translator(run, work_size=0, flip_average=False).translate([img])[0])
    assert np.abs(full.astype(int) - out).mean() > 1  # colouring at full size is another result
    assert np.array_equal(np.asarray(Translator(run, work_size=64, flip_average=False).translate([img])[0]), full)
    with pytest.raises(Img2ImgError, match="work size"):
        Translator(run, work_size=-1)


def test_sketch_models_draw_a_copy_at_work_size(tmp_path):
    """A sketch model runs on a copy whose short side is work_size and its output is enlarged
    back (bicubic); smaller drawings are drawn at their own size; 0 draws at full size."""
    run = save_run(tmp_path / "run", [*TINY_RESNET, "model.ngf=4", "data.kind=sketch", "data.sketch=xdog", "model.input_nc=1"])
    drawing = photo("rocket", (96, 64)).convert("L")
    out = np.asarray(Translator(run, work_size=32).translate([drawing])[0])
    small = Translator(run, work_size=0).translate([drawing.resize((48, 32), Image.Resampling.BICUBIC)])[0]
    assert out.shape == (64, 96, 3) and np.abs(out.astype(int) - resize_to(np.asarray(small), 64, 96)).max() <= 1
    full = np.asarray(Translator(run, work_size=0).translate([drawing])[0])
    assert np.abs(full.astype(int) - out).mean() > 1  # drawing at full size is another result
    assert np.array_equal(np.asarray(Translator(run, work_size=64).translate([drawing])[0]), full)
    assert "network at 256 px" in Translator(run).describe()


def mirrored(u8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(u8[:, ::-1])


def test_flip_average_is_the_mean_with_the_mirror_images_output(tmp_path, resnet):
    """flip_average: each output is the mean of the network's output for the image and, flipped
    back, for its mirror image; then, for colorization, put under the input's luma. On by default
    for colorization only. Odd widths (padding on one side) and mixed sizes in one batch."""
    run = save_run(tmp_path / "run", [*TINY_RESNET, "model.ngf=4", "data.kind=colorization", "model.input_nc=1"])
    assert Translator(run).flip_average and not Translator(run, keep_luminance=False).flip_average
    assert not Translator(resnet[1]).flip_average
    raw = Translator(run, keep_luminance=False)
    greys = [np.asarray(photo(n, size).convert("L"))[:, :, None] for n, size in (("coffee", (45, 31)), ("chelsea", (64, 48)))]
    flipped = Translator(run, batch_size=2)
    assert "flip-averaged" in flipped.describe()
    for grey, out in zip(greys, flipped.translate_arrays(greys)):
        a, b = raw.translate_arrays([grey, mirrored(grey)])
        mean = (a.astype(int) + b[:, ::-1] + 1) // 2
        assert np.abs(out.astype(int) - restore_luminance(grey[:, :, 0], mean.astype(np.uint8))).max() <= 1
        assert np.abs(mean - a).mean() > 1  # the mirror image's output is another one: averaging changes it
    # Any model, on request; tiled images too (the mirror image is tiled like the image).
    rgb = np.asarray(photo("astronaut", (150, 100)))
    plain, avg = Translator(resnet[1], tile=64), Translator(resnet[1], tile=64, flip_average=True)
    a, b = plain.translate_arrays([rgb, mirrored(rgb)])
    assert np.abs(avg.translate_arrays([rgb])[0].astype(int) - (a.astype(int) + b[:, ::-1] + 1) // 2).max() <= 1


# ---------------------------------------------------------------------------- tiling


def train_tiny_unet(steps: int = 60) -> torch.nn.Module:
    """A tiny instance-norm U-Net fitted briefly to a fixed colour transform of real photo crops.

    Tiling is judged on a (briefly) trained network: a randomly initialized instance-norm
    network is chaotic, every layer renormalizing noise-like features, so any change of
    statistics is amplified in a way trained generators do not show."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.chelsea(), data.rocket()]
    sepia = torch.tensor([[0.39, 0.77, 0.19], [0.35, 0.69, 0.17], [0.27, 0.53, 0.13]])
    net = build_generator("unet", ngf=8, num_downs=4, norm="instance", dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(steps):
        crops = []
        for _ in range(4):
            p = photos[rng.integers(len(photos))]
            i, j = rng.integers(p.shape[0] - 48), rng.integers(p.shape[1] - 48)
            crops.append(p[i : i + 48, j : j + 48].transpose(2, 0, 1))
        x = torch.from_numpy(np.stack(crops)).float() / 127.5 - 1
        target = torch.einsum("oc,bchw->bohw", sepia, (x + 1) / 2).clamp(0, 1) * 2 - 1
        loss = (net(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_tiled_matches_untiled_on_a_real_photo(tmp_path):
    overrides = ["model.generator=unet", "model.ngf=8", "model.num_downs=4", "model.norm_g=instance", "model.dropout=0"]
    run = save_run(tmp_path / "run", overrides, net=train_tiny_unet())
    img = photo("coffee")  # 600 x 400: 2 x 3 tiles of 256 px
    whole = Translator(run, tile=None).translate([img])[0]
    shared = Translator(run, tile=256).translate([img])[0]
    per_tile = Translator(run, tile=256, shared_stats=False).translate([img])[0]
    assert whole.size == shared.size == img.size
    assert psnr(shared, whole) > 40
    # Shared instance-norm statistics are what makes tiles agree (per-tile stats shift each tile).
    assert psnr(shared, whole) > psnr(per_tile, whole) + 3


def test_tiled_batchnorm_unet_is_nearly_exact(tmp_path):
    """pix2pix's U-Net uses batch norm: in eval mode it is shift-equivariant by its stride, so
    stride-aligned, blended tiles differ from a whole-image pass only near tile borders."""
    overrides = ["model.generator=unet", "model.ngf=4", "model.num_downs=4", "model.norm_g=batch"]
    run = save_run(tmp_path / "run", overrides)
    img = photo("coffee", (300, 200))
    whole = Translator(run, tile=None).translate([img])[0]
    tiled = Translator(run, tile=128, batch_size=4).translate([img])[0]
    assert tiled.size == whole.size and not np.array_equal(np.asarray(tiled), np.asarray(whole))  # it was tiled
    assert psnr(tiled, whole) > 45


def test_onnx_shared_statistics_tiling_matches_torch(resnet):
    """ONNX Runtime tiles through graphs derived from the export (statistics out, statistics
    in); they must give what the PyTorch hooks give."""
    run, onnx_path = resnet
    img = photo("astronaut", (300, 200))
    a = Translator(onnx_path, tile=128).translate([img])[0]
    b = Translator(run, tile=128, precision="fp32").translate([img])[0]
    assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 2
    # Both were tiled: the whole-image pass differs from them by far more than they differ.
    whole = Translator(onnx_path, tile=None).translate([img])[0]
    assert np.abs(np.asarray(a, int) - np.asarray(whole, int)).max() > 10


# ---------------------------------------------------------------------------- progress, cancelling, limits


def count_passes(tr: Translator, fail: bool = False) -> list[str]:
    """The names of the backend methods tr calls, one per network pass, in order; with fail,
    any pass raises AssertionError."""
    calls: list[str] = []
    backend = tr._backend
    for name in ("run", "record_stats", "run_fixed"):
        method = getattr(backend, name)

        def counted(*args, method=method, name=name):
            calls.append(name)
            assert not fail, f"{name} ran"
            return method(*args)

        setattr(backend, name, counted)
    return calls


def test_progress_reports_every_network_pass(resnet):
    """One tiled image (its statistics pass and its tiles, two per batch) and three small ones
    in two batches: progress(done, total) after each pass, total = all of them."""
    tr = Translator(resnet[1], tile=64, batch_size=2)
    images = [photo("astronaut", (300, 200)), photo("coffee", (48, 40)), photo("chelsea", (48, 40)), photo("rocket", (30, 20))]
    expected = tr.translate(images)
    calls, reports = count_passes(tr), []
    out = tr.translate(images, progress=lambda done, total: reports.append((done, total)))
    total = len(calls)
    assert calls[0] == "record_stats" and calls.count("run") == 2 and calls.count("run_fixed") == total - 3
    assert total - 3 > 10  # the tiles, each pass reported
    assert reports == [(k, total) for k in range(1, total + 1)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out, expected))


class Cancelled(Exception):
    pass


def test_raising_progress_stops_at_once_and_keeps_nothing(resnet):
    """A callback that raises after the statistics pass and two tiles: no further pass runs,
    the exception comes out, and the call's arrays (output, accumulator, tiles) are freed
    without the cycle collector, so a cancelled request gives its memory back at once."""
    tr = Translator(resnet[1], tile=64)
    img = np.asarray(photo("astronaut", (2000, 1500)))  # 9 MB in and out; hundreds of tiles

    def cancel(done: int, total: int) -> None:
        if done == 3:
            raise Cancelled

    calls = count_passes(tr)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        try:
            tr.translate_arrays([img], progress=cancel)
        except Cancelled:
            pass
        else:
            pytest.fail("the exception raised by progress was swallowed")
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert calls == ["record_stats", "run_fixed", "run_fixed"]
    assert left < 1e6, f"{left / 1e6:.1f} MB still held after the cancelled call"


def test_pixel_limit_is_refused_before_any_pass(resnet):
    """MAX_PIXELS (img2img.data.images) holds for arrays and PIL images given to the runtime
    directly, not only for files read by load_image; nothing runs for a refused call."""
    tr = Translator(resnet[1])
    calls = count_passes(tr, fail=True)
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_001, 10_000, 3))  # no memory behind it
    with pytest.raises(Img2ImgError, match=r"10000x10001 is 100\.01 megapixels, over the limit of 100 megapixels"):
        tr.translate_arrays([np.zeros((8, 8, 3), np.uint8), huge])
    with pytest.raises(Img2ImgError, match="over the limit of 100 megapixels"):
        tr.translate([Image.new("1", (10_001, 10_000))])
    assert calls == []


def test_describe_names_runtime_device_threads_and_tiles(resnet):
    run, onnx_path = resnet
    line = Translator(onnx_path, device="cpu", threads=2, tile=512).describe()
    assert re.fullmatch(r"ONNX Runtime \d+\.\d+\.\d+ on CPU \(CPUExecutionProvider\), 2 threads, tiles of 512 px", line), line
    assert "one thread per physical core" in Translator(onnx_path, device="cpu").describe()
    line = Translator(run, device="cpu", tile=None, batch_size=4, precision="fp32").describe()
    assert line == f"PyTorch {torch.__version__} on CPU, {torch.get_num_threads()} threads, fp32, no tiling, batches of 4"


# ---------------------------------------------------------------------------- errors and devices


def test_errors(resnet, tmp_path):
    run, onnx_path = resnet
    with pytest.raises(Img2ImgError, match="export"):
        Translator(run, backend="onnx")
    with pytest.raises(Img2ImgError, match="ONNX model"):
        Translator(onnx_path, backend="torch")
    with pytest.raises(Img2ImgError, match="unknown device"):
        Translator(onnx_path, device="tpu")
    with pytest.raises(Img2ImgError, match="does not exist"):
        Translator(tmp_path / "nope.onnx")
    with pytest.raises(Img2ImgError, match="BtoA"):
        Translator(onnx_path, direction="BtoA")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(Img2ImgError, match="cannot load"):
        Translator(tmp_path / "junk.onnx")


@pytest.mark.skipif(cuda_usable(), reason="checks the CPU-only path")
def test_cpu_only_machine_uses_cpu_provider_quietly(resnet, capfd):
    tr = Translator(resnet[1], device="auto", threads=1)
    assert tr.device == "cpu" and tr.providers == ("CPUExecutionProvider",)
    tr.translate([photo("coffee", (40, 40))])
    assert capfd.readouterr().err == ""  # no provider error spam
    for model in resnet:  # both backends refuse alike
        with pytest.raises(Img2ImgError, match="no CUDA GPU is usable here"):
            Translator(model, device="cuda")
    torch_tr = Translator(resnet[0], device="auto")
    assert torch_tr.device == "cpu" and torch_tr.providers == ()


@pytest.mark.skipif(not cuda_usable(), reason="needs a CUDA GPU")
def test_cuda_runs_both_backends_alike(resnet):
    img = photo("astronaut", (300, 200))
    ort_gpu = Translator(resnet[1], device="cuda", tile=128)
    torch_gpu = Translator(resnet[0], device="cuda", tile=128)
    assert ort_gpu.device == torch_gpu.device == "cuda" and ort_gpu.providers[0] == "CUDAExecutionProvider"
    cpu = np.asarray(Translator(resnet[1], device="cpu", tile=128).translate([img])[0], int)
    for tr in (ort_gpu, torch_gpu):
        assert np.abs(np.asarray(tr.translate([img])[0], int) - cpu).max() <= 2


@pytest.mark.slow
def test_4096_photo_memory_is_bounded(tmp_path):
    """A 4096 x 4096 photo through ONNX Runtime on CPU with the default tile size stays under
    2 GB peak RSS. The generator has the default width (ngf 64, the widest full-resolution
    activations) and one residual block to keep the test to minutes."""
    run = save_run(tmp_path / "run", ["model.ngf=64", "model.n_blocks=1"])
    onnx_path = export_onnx(run, tmp_path / "g.onnx").path
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from PIL import Image
        from skimage import data
        from img2img.runtime import Translator
        img = Image.fromarray(data.astronaut()).resize((4096, 4096), Image.Resampling.BICUBIC)
        t = time.perf_counter()
        out = Translator({str(onnx_path)!r}).translate([img])[0]
        print(json.dumps({{"size": out.size, "seconds": time.perf_counter() - t,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["size"] == [4096, 4096]
    assert result["peak_rss_mb"] < 2048
