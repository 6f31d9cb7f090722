"""The web UI end to end: tiny models trained on real photos and exported to ONNX, the Gradio
server started on 127.0.0.1, every endpoint driven through gradio_client with real photos."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, ctrl_c_reaches_child, photo, real_photos, save_run
from img2img.app import TAB_TASKS, Limits, SessionCache, build_app, discover_models, launch_app
from img2img.app.tabs import HINT_COLOURS
from img2img.data.derived import luminance, xdog
from img2img.runtime import Translator

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Tiny models (shared with test_browser.py and docs/make_ui_screenshots.py through the disk)


def build_tiny_models(dest: Path, data_root: Path, log: logging.Logger, steps: int = 2) -> Path:
    """Train a colorization and a sketch2photo pix2pix (on photos/) and a CycleGAN (on
    unpaired/) for `steps` steps with the TINY overrides, export them to dest/models/*.onnx
    (both CycleGAN directions), add one foreign .onnx; returns the models folder. Built once
    per pytest session: a marker file says it is complete."""
    from img2img.config import load_config
    from img2img.export import export_onnx
    from img2img.train import train

    models = dest / "models"
    if (dest / "complete").is_file():
        return models
    runs = [
        ("colorization", "photos", []),
        # sketch2photo with a ResNet generator: half the export time of a U-Net, and both
        # architectures (strides 4 and 32) then go through the app's padding.
        ("sketch2photo", "photos", ["model.generator=resnet"]),
        ("cyclegan", "unpaired", []),
    ]
    for preset, folder, extra in runs:
        # Samples and checkpoints at the end only (TINY writes them every 2 steps).
        every = [f"train.sample_every={steps}", f"train.checkpoint_every={steps}", f"train.log_every={max(1, steps // 10)}"]
        cfg = load_config(preset, [*TINY, *extra, *every, f"train.max_steps={steps}"])
        train(cfg, data_root / folder, dest / "runs" / preset, torch.device("cpu"), log, progress=False)
        for direction in ("AtoB", "BtoA") if preset == "cyclegan" else ("AtoB",):
            # The parity check is test_export's job; skipping it here saves seconds.
            export_onnx(dest / "runs" / preset, models / f"{preset}_{direction}.onnx", direction=direction, check=False)
    write_foreign_onnx(models / "other" / "not_img2img.onnx")
    (dest / "complete").touch()
    return models


def write_foreign_onnx(path: Path) -> None:
    """A valid ONNX model without an img2img card: discovery must skip it."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph), str(path))


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory, data_root, log) -> Path:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "ui_models", data_root, log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ui_models, tmp_path_factory):
    """(url, session cache) of a running app; closed after the module."""
    sessions = SessionCache(threads=2)
    demo = build_app(ui_models, sessions=sessions, examples_dir=tmp_path_factory.mktemp("examples"))
    assert sessions.loaded() == []  # sessions are created on first use, not at startup
    url = launch_app(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    yield url, sessions
    demo.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server[0], verbose=False)


# --------------------------------------------------------------------------------------------
# Real inputs, at sizes that are not multiples of the networks' strides


def real_input(tmp_path: Path, kind: str, size: tuple[int, int] = (75, 50), name: str = "coffee") -> Path:
    rgb = np.asarray(Image.fromarray(real_photos()[name]).convert("RGB").resize(size, Image.Resampling.LANCZOS))
    arr = {"photo": rgb, "grey": luminance(rgb), "sketch": xdog(rgb)}[kind]
    path = tmp_path / f"{name}_{kind}_{size[0]}x{size[1]}.png"
    Image.fromarray(arr).save(path)
    return path


def check_result(result: str, size: tuple[int, int]) -> Image.Image:
    out = Image.open(result)
    out.load()
    assert out.format == "PNG" and out.mode == "RGB"
    assert out.size == size
    assert np.asarray(out).std() > 0  # a real picture, not a constant fill
    return out


# --------------------------------------------------------------------------------------------
# Tests


def test_discovery_groups_models_by_tab_and_direction(ui_models):
    by_tab, skipped = discover_models(ui_models, TAB_TASKS)
    assert [g.label for g in by_tab["style"]] == ["cyclegan"]
    assert by_tab["style"][0].directions == ["AtoB", "BtoA"]
    assert [g.label for g in by_tab["colorization"]] == ["colorization"]
    assert [g.label for g in by_tab["sketch"]] == ["sketch2photo"]
    assert len(skipped) == 1 and skipped[0].startswith("other/not_img2img.onnx: ") and "model card" in skipped[0]


def test_two_exports_with_one_name_are_told_apart(ui_models, tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ui_models, models)
    (models / "v2").mkdir()
    shutil.copy(models / "colorization_AtoB.onnx", models / "v2" / "colorization.onnx")
    by_tab, _ = discover_models(models, TAB_TASKS)
    labels = [g.label for g in by_tab["colorization"]]
    assert labels == ["colorization (colorization_AtoB.onnx)", "colorization (v2/colorization.onnx)"]


@pytest.mark.parametrize("api_name,kind,args", [
    ("/style_transfer", "photo", ()),
    ("/style_transfer", "photo", ("cyclegan", "BtoA")),
    ("/colorize", "grey", ()),
    ("/sketch_to_photo", "sketch", ()),
])  # fmt: skip
def test_endpoints_translate_real_photos(client, tmp_path, api_name, kind, args):
    src = real_input(tmp_path, kind)
    check_result(client.predict(handle_file(str(src)), *args, api_name=api_name), (75, 50))


def test_style_tab_translates_a_video(client, tmp_path):
    """A pan over a real photo, 640x360 with sound: the result is an MP4 a browser plays (H.264)
    with the clip's frame rate, frame count and sound, its frames scaled to the video limit."""
    from skimage import data

    from img2img.video import pan_zoom, probe, write_test_clip

    src = write_test_clip(pan_zoom(data.astronaut(), (640, 360), 12), tmp_path / "astronaut walk.mov", fps=12, audio_hz=440)
    result = client.predict(handle_file(str(src)), "cyclegan", "BtoA", api_name="/style_transfer_video")
    path = Path(result["video"] if isinstance(result, dict) else result)
    assert path.name.startswith("astronaut_walk_") and path.suffix == ".mp4", path.name
    info = probe(path)
    assert (info.width, info.height) == (Limits().video_side, 270)
    assert info.frames == 12 and info.fps == 12 and info.codec == "h264" and info.audio == "aac"


def test_bad_videos_are_refused_with_the_users_file_name(client, tmp_path):
    from skimage import data

    from img2img.video import pan_zoom, write_test_clip

    notes = tmp_path / "notes.mp4"
    notes.write_text("these are not frames\n" * 50)
    long = write_test_clip(pan_zoom(data.coffee(), (64, 48), 42), tmp_path / "long.mp4", fps=2)  # 21 s
    for path, words in [(notes, "cannot read this video"), (long, "21 s is over the 20 s video limit")]:
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(path)), api_name="/style_transfer_video")
        message = str(err.value)
        assert f"{path.name}: " in message and words in message and "gradio" not in message.lower(), message


def test_requests_reuse_the_session_of_their_model_file(client, server, ui_models, tmp_path):
    _, sessions = server
    path = ui_models / "colorization_AtoB.onnx"
    src = real_input(tmp_path, "grey", (64, 40), "chelsea")
    check_result(client.predict(handle_file(str(src)), api_name="/colorize"), (64, 40))
    assert path in sessions.loaded()
    first, count = sessions.get(path), len(sessions.loaded())
    check_result(client.predict(handle_file(str(src)), api_name="/colorize"), (64, 40))
    assert sessions.get(path) is first and len(sessions.loaded()) == count  # no second session


def test_concurrent_first_requests_share_one_session(ui_models):
    sessions = SessionCache(threads=1)
    path = ui_models / "colorization_AtoB.onnx"
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: sessions.get(path), range(4)))
    assert all(t is got[0] for t in got) and sessions.loaded() == [path]


def test_large_image_is_tiled_to_its_full_size(tmp_path, ui_models):
    """The page's policy for large uploads: tiles above Limits.tile, output at full size. The
    result is the Translator's with 64 px tiles, not a whole-image pass: it really was tiled
    (how close tiles come to a whole-image pass is test_runtime.py's, on trained networks)."""
    path = ui_models / "colorization_AtoB.onnx"
    img = Image.open(real_input(tmp_path, "grey", (150, 90), "astronaut"))
    served = np.asarray(SessionCache(threads=2, tile=64).get(path).translate([img])[0])
    tiled = np.asarray(Translator(path, threads=2, tile=64).translate([img])[0])
    whole = np.asarray(Translator(path, threads=2, tile=None).translate([img])[0])
    assert served.shape == whole.shape == (90, 150, 3)
    assert np.array_equal(served, tiled) and not np.array_equal(served, whole)


def test_bad_uploads_get_a_message_and_the_server_carries_on(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is a text file with an image's name\n")
    good = real_input(tmp_path, "grey")
    data = good.with_suffix(".jpg")
    Image.open(good).convert("RGB").save(data, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 5000)).save(bomb)  # 45 MP of nothing: a few KB on disk

    for path, words in [(text, "not an image"), (truncated, "truncated"), (bomb, "over the limit of 40 megapixels")]:
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(path)), api_name="/colorize")
        assert path.name in str(err.value) and words in str(err.value), str(err.value)
        # The next good request succeeds: the server is still up and serving.
        check_result(client.predict(handle_file(str(good)), api_name="/colorize"), (75, 50))


def test_unknown_model_or_direction_is_explained(client, tmp_path):
    src = real_input(tmp_path, "photo")
    with pytest.raises(Exception, match="unknown model .nope.; choose one of: cyclegan"):
        client.predict(handle_file(str(src)), "nope", "AtoB", api_name="/style_transfer")


def test_upload_over_the_size_limit_is_refused(server, tmp_path):
    """Over the largest limit (videos'), the server refuses the file at upload (what a browser or
    curl meets), and gradio_client refuses before sending, from the limit the page's config
    announces. An image over the image limit but under the video one is refused by the handler."""
    import httpx

    url, _ = server
    limits = Limits()
    limit = limits.max_upload_bytes
    small = httpx.post(url + "gradio_api/upload", files={"files": ("ok.png", b"x" * 1000, "image/png")}, timeout=60)
    assert small.status_code == 200
    big = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", os.urandom(limit + 1024), "image/png")}, timeout=60)
    assert big.status_code == 413 and str(limit) in big.text
    path = tmp_path / "big.png"
    path.write_bytes(os.urandom(limit + 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        Client(url, verbose=False).predict(handle_file(str(path)), api_name="/colorize")
    path.write_bytes(os.urandom(limits.max_file_mb * 2**20 + 1024))
    with pytest.raises(Exception, match=f"big.png: 20.0 MB is over the {limits.max_file_mb} MB image upload limit"):
        Client(url, verbose=False).predict(handle_file(str(path)), api_name="/colorize")


class FakeSessions(SessionCache):
    """Stands in for every model's session (get returns itself) and counts the translations
    started and running at once: what the queue and cancellation tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = self.peak = self.started = 0

    def get(self, path: Path) -> "FakeSessions":
        return self

    @contextmanager
    def counted(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1


class GatedSessions(FakeSessions):
    """Translations that wait for `gate` (each returns its input): requests then stay running
    or queued for as long as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def translate(self, images: list[Image.Image], progress=None) -> list[Image.Image]:
        with self.counted():
            assert self.gate.wait(timeout=120), "the test never opened the gate"
            return [img.convert("RGB") for img in images]


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_queue_is_bounded_and_shared_by_the_tabs(ui_models, tmp_path):
    """Concurrency 1 and 2 waiting, over all three tabs: one request runs, two wait (in other
    tabs than the running one), and the next is refused with "queue full"; after that, every
    accepted request completes, one at a time."""
    from gradio_client.utils import Status

    sessions = GatedSessions()
    demo = build_app(ui_models, limits=Limits(queue_size=2, concurrency=1), sessions=sessions, examples_dir=tmp_path / "examples")
    url = launch_app(demo, port=free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False)
        photo, grey, sketch = (handle_file(str(real_input(tmp_path, kind))) for kind in ("photo", "grey", "sketch"))
        running = client.submit(grey, api_name="/colorize")
        wait_for(lambda: sessions.started == 1, "the first request to start")
        queued = [client.submit(photo, api_name="/style_transfer"), client.submit(sketch, api_name="/sketch_to_photo")]
        wait_for(lambda: all(j.status().code == Status.IN_QUEUE for j in queued), "two requests to be queued")
        refused = client.submit(grey, api_name="/colorize")
        with pytest.raises(Exception, match="[Qq]ueue is full"):
            refused.result(timeout=60)
        assert sessions.started == 1  # the other tabs' requests wait for the running one
        sessions.gate.set()
        for job in [running, *queued]:
            check_result(job.result(timeout=120), (75, 50))
        assert sessions.started == 3 and sessions.peak == 1
    finally:
        sessions.gate.set()
        demo.close()


def test_reading_model_cards_imports_no_torch(tmp_path):
    """The UI reads the cards of a folder of exported models, and a card is read from an .onnx,
    without loading PyTorch (seconds of start-up and about 0.5 GB): checked in a fresh process."""
    from img2img.export import export_onnx

    run = save_run(tmp_path / "run", ["model.ngf=4", "model.n_blocks=1", "data.crop_size=32", "data.load_size=40", "name=tiny"])
    onnx_path = export_onnx(run, tmp_path / "models" / "tiny.onnx", check=False).path
    script = textwrap.dedent(
        f"""
        import sys
        from img2img.card import read_onnx_card
        from img2img.app.models import discover_models
        card = read_onnx_card({str(onnx_path)!r})
        by_tab, skipped = discover_models({str(onnx_path.parent)!r}, {{"style": ("paired",)}})
        print(card.name, [g.label for g in by_tab["style"]], skipped, "torch" in sys.modules)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["tiny", "['tiny']", "[]", "False"]


def test_page_loads_with_the_tabs_and_the_limits(server):
    url, _ = server
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
    with urllib.request.urlopen(url + "config", timeout=30) as r:
        config = r.read().decode()
    for words in ("Style transfer", "Colorization", "Sketch to photo", "Model details", "overlapping 1024 px tiles",
                  "at most 64 waiting", "A photo in, a painting out", "Strength (%)",
                  "Up to 20 s and 100 MB", "Translate video"):
        assert words in config, words
    assert "Colour hints" not in config and HINT_COLOURS[0] not in config  # the sketch model takes none


def test_a_sketch_model_with_colour_hints_gets_colour_brushes_and_takes_coloured_drawings(tmp_path):
    """A model trained with data.colour_hints: the sketch tab explains hints, its canvas offers
    colours beside the pens, and a drawing with colour marks is translated in colour."""
    from img2img.evaluate import hinted
    from img2img.export import export_onnx

    run = save_run(tmp_path / "run", [*TINY, "data.colour_hints=true", "model.input_nc=3"], preset="sketch2photo")
    export_onnx(run, tmp_path / "models" / "hints.onnx", check=False)
    demo = build_app(tmp_path / "models", examples_dir=tmp_path / "examples")
    url = launch_app(demo, port=free_port(), block=False, quiet=True)
    try:
        with urllib.request.urlopen(url + "config", timeout=30) as r:
            config = r.read().decode()
        for words in ("Colour hints", "paint colours with a wide brush", "RGB (a drawing with colour hints)", *HINT_COLOURS):
            assert words in config, words
        rgb = np.asarray(photo("coffee", 64))
        path = tmp_path / "coffee_hints.png"
        Image.fromarray(hinted(xdog(rgb), rgb, 8, path.name)).save(path)
        result = Client(url, verbose=False).predict(handle_file(str(path)), api_name="/sketch_to_photo")
        assert np.array_equal(np.asarray(check_result(result, (64, 64))),
                              np.asarray(Translator(tmp_path / "models" / "hints.onnx").translate([Image.open(path)])[0]))
    finally:
        demo.close()


def test_empty_models_dir_says_how_to_train_and_export(tmp_path):
    empty = tmp_path / "no_models"
    empty.mkdir()
    demo = build_app(empty, examples_dir=tmp_path / "examples")
    url = launch_app(demo, port=free_port(), block=False, quiet=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200
        with urllib.request.urlopen(url + "config", timeout=30) as r:
            config = r.read().decode()
        for words in ("img2img train --config colorization --data", "img2img train --config sketch2photo",
                      "img2img train --config cyclegan", f"img2img export checkpoints/colorization -o {empty}"):
            assert words in config, words
        with pytest.raises(Exception, match="no colorization model is installed"):
            Client(url, verbose=False).predict(handle_file(str(real_input(tmp_path, "grey"))), api_name="/colorize")
    finally:
        demo.close()


def test_serve_py_starts_the_server(ui_models):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port), "--models", str(ui_models)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "serve.py did not answer within 90 s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    # The start-up report: models per tab (with their directions), the device and why, the queue.
    for words in ("4 model file(s)", "Style transfer: cyclegan (A → B, B → A)", "Colorization: colorization",
                  "Sketch to photo: sketch2photo", "skipped other/not_img2img.onnx", "device: CPU (",
                  "queue: 1 translation(s) at a time, up to 64 waiting"):
        assert words in out, (words, out)


def test_documented_client_example_runs(server, tmp_path, capsys):
    """docs/ui.md's gradio_client example, run as written against the test server."""
    import re

    text = (REPO / "docs" / "ui.md").read_text()
    block = re.search(r"## API.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) == 5
    src = Image.open(real_input(tmp_path, "grey")).convert("RGB")
    src.save(tmp_path / "grey_photo.jpg", quality=95)
    code = block.replace("http://127.0.0.1:7860/", server[0]).replace('"grey_photo.jpg"', repr(str(tmp_path / "grey_photo.jpg")))
    exec(compile(code, "docs/ui.md", "exec"), {})
    check_result(capsys.readouterr().out.strip().splitlines()[-1], (75, 50))  # after "Loaded as API: ..."


def test_api_keywords_model_and_direction(client, tmp_path):
    src = real_input(tmp_path, "photo")
    result = client.predict(image=handle_file(str(src)), model="cyclegan", direction="BtoA", api_name="/style_transfer")
    check_result(result, (75, 50))


def test_api_strength_blends_the_input_with_the_result(client, ui_models, tmp_path):
    """strength=0 gives back the input, 100 (the default) the model's result, 50 their mean."""
    src = real_input(tmp_path, "grey", (75, 50), "chelsea")
    inp = np.asarray(Image.open(src).convert("RGB"), dtype=np.int16)
    model = np.asarray(Translator(ui_models / "colorization_AtoB.onnx", threads=2).translate([Image.open(src)])[0], dtype=np.int16)

    def served(**kw) -> np.ndarray:
        return np.asarray(check_result(client.predict(handle_file(str(src)), api_name="/colorize", **kw), (75, 50)), dtype=np.int16)

    assert np.array_equal(served(strength=0), inp)
    assert np.array_equal(served(strength=100), model) and np.array_equal(served(), model)
    assert np.abs(served(strength=50) - (inp + model) / 2).max() <= 1
    assert not np.array_equal(inp, model)  # the three cases differ
    with pytest.raises(Exception, match="strength must be between 0 and 100"):
        client.predict(handle_file(str(src)), strength=150, api_name="/colorize")


def test_result_is_named_after_the_input_and_the_task(client, tmp_path):
    """The download's name says what it is: <input name>_<what the model made>.png."""
    grey = real_input(tmp_path, "grey", (75, 50), "coffee")
    assert Path(client.predict(handle_file(str(grey)), api_name="/colorize")).name == "coffee_grey_75x50_colorized.png"
    sketch = real_input(tmp_path, "sketch", (75, 50), "rocket")
    assert Path(client.predict(handle_file(str(sketch)), api_name="/sketch_to_photo")).name == "rocket_sketch_75x50_photo.png"
    photo = real_input(tmp_path, "photo", (75, 50), "chelsea")  # the tiny CycleGAN's run name says no domains
    result = client.predict(handle_file(str(photo)), direction="BtoA", api_name="/style_transfer")
    assert Path(result).name == "chelsea_photo_75x50_cyclegan_BtoA.png"


def test_directions_are_named_after_the_domains():
    from img2img.app.models import domain_names

    assert domain_names("style", "starry_night") == ("photo", "Starry Night")
    assert domain_names("style", "horse2zebra") == ("horse", "zebra")
    assert domain_names("paired", "edges2shoes") == ("edges", "shoes")
    assert domain_names("colorization", "anything") == ("grey photo", "colour photo")
    assert domain_names("sketch2photo", "anything") == ("sketch", "photo")
    # Names that say nothing about the domains: the presets' defaults, a method's name.
    assert domain_names("style", "cyclegan") == domain_names("paired", "pix2pix") == ("A", "B")
    assert domain_names("paired", "facades_pix2pix") == ("A", "B")


def test_shipped_models_are_offered_by_their_domains():
    """What the page shows for the models in checkpoints/pretrained."""
    by_tab, skipped = discover_models(REPO / "checkpoints", TAB_TASKS)
    labels = {key: {g.label: [g.files[d].route.label for d in g.directions] for g in groups} for key, groups in by_tab.items()}
    assert labels == {
        "style": {"starry_night": ["photo → Starry Night", "Starry Night → photo"]},
        "colorization": {"colorization": ["grey photo → colour photo"]},
        "sketch": {"sketch2photo": ["sketch → photo"]},
    }
    assert skipped == []


class SlowSessions(FakeSessions):
    """A translation of `passes` network passes of `pass_s` seconds each, reporting progress
    after each as the Translator does; counts the passes computed."""

    def __init__(self, passes: int = 400, pass_s: float = 0.05) -> None:
        super().__init__()
        self.passes, self.pass_s, self.computed = passes, pass_s, 0

    def translate(self, images: list[Image.Image], progress=None) -> list[Image.Image]:
        with self.counted():
            for done in range(1, self.passes + 1):
                time.sleep(self.pass_s)
                with self.lock:
                    self.computed += 1
                if progress is not None:
                    progress(done, self.passes)
            return [img.convert("RGB") for img in images]


@pytest.fixture
def slow_server(ui_models, tmp_path):
    sessions = SlowSessions()
    demo = build_app(ui_models, sessions=sessions, examples_dir=tmp_path / "examples")
    url = launch_app(demo, port=free_port(), block=False, quiet=True)
    yield url, sessions
    demo.close()


def assert_stops(sessions: SlowSessions, what: str) -> None:
    """The computing stops within about a pass of the cancel (not after the 400 passes)."""
    wait_for(lambda: sessions.running == 0, f"the {what} translation to stop", timeout=10)
    stopped_at = sessions.computed
    time.sleep(0.5)
    assert sessions.computed == stopped_at and stopped_at < sessions.passes // 2


def test_progress_counts_tiles_and_a_cancelled_request_stops_computing(slow_server, tmp_path):
    """Issue 13 item 6: a cancel must stop the translation, not only free its queue slot. The
    page's progress bar shows the passes done / total ("tiles")."""
    from gradio_client.utils import Status

    url, sessions = slow_server
    client = Client(url, verbose=False)
    job = client.submit(handle_file(str(real_input(tmp_path, "grey"))), api_name="/colorize")
    wait_for(lambda: sessions.computed >= 5, "the translation to start")
    wait_for(lambda: (job.status().progress_data or [None])[0] is not None, "a progress update")
    unit = job.status().progress_data[0]
    assert unit.unit == "tiles" and unit.length == sessions.passes and 1 <= unit.index <= sessions.passes
    assert job.status().code == Status.PROGRESS
    job.cancel()
    assert_stops(sessions, "cancelled")
    # The next request runs, and never beside the cancelled one.
    sessions.passes = 3
    check_result(client.predict(handle_file(str(real_input(tmp_path, "grey"))), api_name="/colorize"), (75, 50))
    assert sessions.peak == 1


def test_a_disconnected_client_stops_its_translation(slow_server, tmp_path):
    """A browser tab closed mid-translation: Gradio only marks the request dead; it stops too."""
    import httpx

    url, sessions = slow_server
    upload = httpx.post(url + "gradio_api/upload", files={"files": ("g.png", real_input(tmp_path, "grey").read_bytes(), "image/png")}, timeout=30)
    path = upload.json()[0]
    config = httpx.get(url + "config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "colorize")
    session = "disconnect-test"
    body = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, None, 100], "fn_index": fn_index, "session_hash": session}
    assert httpx.post(url + "gradio_api/queue/join", json=body, timeout=30).status_code == 200
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=30) as stream:
        for _ in stream.iter_lines():
            if sessions.computed >= 5:
                break  # leaving the block closes the connection
    assert sessions.computed >= 5, "the translation never started"
    assert_stops(sessions, "disconnected")


def test_fifty_simultaneous_requests_are_all_served(ui_models, tmp_path):
    """Issue 13 item 12: 50 requests at once against the default limits: none is refused
    (16 waiting refused 22 of them), and they run one at a time."""
    sessions = GatedSessions()
    demo = build_app(ui_models, sessions=sessions, examples_dir=tmp_path / "examples")
    url = launch_app(demo, port=free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False)
        grey = handle_file(str(real_input(tmp_path, "grey")))
        jobs = [client.submit(grey, api_name="/colorize") for _ in range(50)]
        wait_for(lambda: sessions.started == 1, "the first request to start")
        time.sleep(1.0)  # every submit has reached the queue (or been refused) by now
        sessions.gate.set()
        for job in jobs:
            check_result(job.result(timeout=120), (75, 50))
        assert sessions.started == 50 and sessions.peak == 1
    finally:
        sessions.gate.set()
        demo.close()


def test_examples_shipped_beside_a_model_replace_the_derived_ones(ui_models, tmp_path):
    """A model folder's examples/ (written by scripts/ship_model.py in the style the model was
    trained on, e.g. HED drawings) become that tab's examples; tabs without them keep the derived."""
    import shutil

    from img2img.app import TAB_TASKS, discover_models, model_examples, write_examples

    models = tmp_path / "models"
    shutil.copytree(ui_models, models)
    by_tab, _ = discover_models(models, TAB_TASKS)
    assert model_examples(by_tab["sketch"]) == []
    model = by_tab["sketch"][0].files["AtoB"].path
    folder = model.parent / "examples" / model.stem
    folder.mkdir(parents=True)
    photo("rocket", 64).convert("L").save(folder / "b_rocket.png")
    photo("coffee", 64).convert("L").save(folder / "a_coffee.png")
    by_tab, _ = discover_models(models, TAB_TASKS)
    assert model_examples(by_tab["sketch"]) == [folder / "a_coffee.png", folder / "b_rocket.png"]
    assert model_examples(by_tab["colorization"]) == [] and write_examples(tmp_path / "ex")["colorization"]


def test_ctrl_c_ends_open_pages_streams_then_exits(ui_models):
    """`img2img serve` stopped with Ctrl-C while a page is open: the page's heartbeat stream is
    ended by the server (a complete chunked response) and the process exits 0. Gradio's
    block_thread() closed only the server, whose graceful shutdown waited on that stream until
    its 5 s join timeout; the process exit then cut the stream (IncompleteRead)."""
    import http.client
    import signal

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "img2img", "serve", "--models", str(ui_models), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            preexec_fn=ctrl_c_reaches_child)
    try:
        for line in proc.stderr:
            if "web UI at" in line:
                break
        # The rest of stderr is drained as it comes (a full pipe would block the server), and the
        # stream is read in a thread: the heartbeat keeps a socket timeout from ever firing, so a
        # server that does not stop must fail the test, not hang it.
        err = []
        drain = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
        drain.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/gradio_api/heartbeat/test-page")
        stream = conn.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b"data: ALIVE")
        proc.send_signal(signal.SIGINT)
        rest: list[bytes | Exception] = []

        def read_rest() -> None:
            try:
                rest.append(stream.read())
            except Exception as e:  # IncompleteRead: the stream was cut instead of ended
                rest.append(e)

        reader = threading.Thread(target=read_rest, daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert rest, "the heartbeat stream was not ended within 60 s of Ctrl-C"
        assert isinstance(rest[0], bytes), rest[0]
        assert proc.wait(timeout=60) == 0
        assert set(rest[0].split()) <= {b"data:", b"ALIVE"}
        drain.join(timeout=10)
        assert "stopping the web UI" in "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
