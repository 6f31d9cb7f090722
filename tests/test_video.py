"""Videos: clips built from real photos (a pan and zoom across scikit-image's photos), translated
with the shipped Starry Night model (ResNet, ngf 16, instance norm): frames, rate, size and audio
kept; flow blending steadier than frame by frame; bad files refused, nothing partial left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from img2img.cli import app
from img2img.metrics import flicker
from img2img.runtime import Translator
from img2img.video import VideoError, pan_zoom, probe, read_frames, translate_video, write_frames, write_test_clip

MODEL = Path(__file__).resolve().parents[1] / "checkpoints/pretrained/starry_night/starry_night_AtoB.onnx"


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(MODEL, backend="onnx", threads=1)  # the ONNX graphs for fixed statistics


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames at 12 fps of a camera move over the coffee photo, with a 440 Hz tone."""
    path = tmp_path_factory.mktemp("video") / "coffee.mp4"
    return write_test_clip(pan_zoom(data.coffee(), (96, 64), 20), path, fps=12, audio_hz=440)


def test_video_keeps_frames_rate_size_and_audio(translator, clip, tmp_path):
    src = probe(clip)
    assert (src.width, src.height, src.fps, src.frames, src.audio) == (96, 64, 12, 20, "aac")
    r = translate_video(translator, clip, tmp_path / "out.mp4")
    out = probe(r.path)
    assert (out.width, out.height, out.fps, out.codec, out.audio) == (96, 64, 12, "h264", "aac")
    assert r.frames == 20 and r.audio
    frames = list(read_frames(r.path))
    assert len(frames) == 20 and frames[0].shape == (64, 96, 3)
    # Translated, not copied: Starry Night's palette is far from the coffee photo's.
    first = next(read_frames(clip))
    assert np.abs(frames[0].astype(int) - first).mean() > 20
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left


@pytest.mark.parametrize("suffix,codec", [(".webm", "vp9"), (".mkv", "h264"), (".avi", "h264")])
def test_other_containers(translator, tmp_path, suffix, codec):
    clip = write_test_clip(pan_zoom(data.astronaut(), (64, 64), 6), tmp_path / f"a{suffix}", fps=10)
    r = translate_video(translator, clip, tmp_path / f"out{suffix}", temporal="off")
    info = probe(r.path)
    assert (info.codec, info.width, info.height, float(info.fps)) == (codec, 64, 64, 10.0)
    assert len(list(read_frames(r.path))) == 6


def test_flow_blending_is_steadier_than_frame_by_frame(translator, clip, tmp_path):
    """The warped flicker (change the input's motion does not explain) drops well below the
    frame-by-frame output's; the input's own figure is the floor."""
    scores = {}
    for mode in ("off", "flow"):
        r = translate_video(translator, clip, tmp_path / f"{mode}.mp4", temporal=mode)
        scores[mode] = flicker(read_frames(r.path), read_frames(clip))
    off, flow = scores["off"]["output"], scores["flow"]["output"]
    assert flow["warped"] < 0.7 * off["warped"], scores
    assert flow["change"] < off["change"]
    assert scores["flow"]["input"]["warped"] < flow["warped"]


def test_ema_with_no_memory_is_frame_by_frame(translator, clip):
    """decay 0: every frame normalized by its own statistics through the fixed-statistics graph,
    which must equal the plain graph (up to float rounding)."""
    from img2img.video import translated_frames

    frames = list(read_frames(clip))[:4]
    ema = list(translated_frames(translator, iter(frames), "ema", decay=0.0))
    off = list(translated_frames(translator, iter(frames), "off"))
    for a, b in zip(ema, off):
        assert np.abs(a.astype(int) - b).max() <= 2


def test_frames_folder(translator, clip, tmp_path):
    n = write_frames(translator, clip, tmp_path / "frames", temporal="off")
    assert n == 20 and len(list((tmp_path / "frames").glob("*.png"))) == 20


def test_cli_translates_videos_and_images_together(clip, tmp_path):
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "clip.mp4").write_bytes(clip.read_bytes())
    Image.fromarray(data.chelsea()).resize((64, 48)).save(inputs / "cat.png")
    r = CliRunner().invoke(app, ["translate", "-m", str(MODEL), "-i", str(inputs), "-o", str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 image(s) and 1 video(s)" in r.output
    # Frames up to 1080p go through the network whole; images keep the 1024 px tiles.
    assert "tiles of 1024 px" in r.output and "videos: " in r.output and "tiles of 1920 px" in r.output, r.output
    assert probe(tmp_path / "out/clip.mp4").frames == 20
    # -o onto the inputs: refused for the video, which is kept.
    r = CliRunner().invoke(app, ["translate", "-m", str(MODEL), "-i", str(inputs / "clip.mp4"), "-o", str(inputs), "--no-progress", "--overwrite"])
    assert r.exit_code == 1 and "would replace the input" in r.output
    assert probe(inputs / "clip.mp4").frames == 20


def test_bad_videos_get_one_line_errors_and_leave_nothing(translator, clip, tmp_path):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are not frames\n" * 50)
    audio_only = tmp_path / "tone.mkv"
    import av

    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=48000)
        tone = np.zeros((1, 4800), np.float32)
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    for bad, why in ((truncated, "cannot read|truncated"), (not_video, "cannot read"), (audio_only, "no video stream")):
        dst = tmp_path / "out" / f"{bad.stem}.mp4"
        with pytest.raises(VideoError, match=why) as e:
            translate_video(translator, bad, dst)
        assert "\n" not in str(e.value)
        assert not dst.exists()
        assert not dst.parent.exists() or not any(dst.parent.iterdir())  # no temp file either


def test_a_clip_over_max_frames_is_refused_while_decoding(translator, clip, tmp_path):
    """The UI's length limit also holds for containers that do not declare their length."""
    dst = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="longer than the limit of 5 frames"):
        translate_video(translator, clip, dst, max_frames=5)
    assert not dst.exists()
    r = translate_video(translator, clip, dst, max_frames=20, audio=False)  # exactly at the limit: fine
    assert r.frames == 20 and not r.audio and probe(dst).audio is None


def test_eval_scores_video_flicker(translator, clip, tmp_path):
    out = translate_video(translator, clip, tmp_path / "out.mp4", temporal="off").path
    r = CliRunner().invoke(app, ["eval", "--pred", str(out), "--source", str(clip)])
    assert r.exit_code == 0, r.output
    assert "| translated video | 20 |" in r.output and "| source video | 20 |" in r.output
    short = write_test_clip(pan_zoom(data.coffee(), (96, 64), 5), tmp_path / "short.mp4")
    r = CliRunner().invoke(app, ["eval", "--pred", str(out), "--source", str(short)])
    assert r.exit_code != 0 and "different numbers of frames" in str(r.exception)
