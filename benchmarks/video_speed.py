"""Video translation: frames/s and flicker of each temporal mode, with the input's own flicker,
at 256x256 and 720p by default. Prints a table (and the CPU it ran on).

    python benchmarks/video_speed.py --model checkpoints/pretrained/starry_night/starry_night_AtoB.onnx
    python benchmarks/video_speed.py --model ... --clip Megamind.avi --max-side 256   # a real clip

Without --clip, each size (--sizes) gets a pan and zoom over scikit-image's coffee photo
(--frames frames at 24 fps). The translator is set up as `img2img translate` sets it up for
videos (tiles of VIDEO_TILE: 720p in one network pass). Flicker (img2img.metrics.flicker,
levels of 255, lower is steadier): "change" is the mean |O_t - O_{t-1}|, "warped" the same after
moving O_{t-1} along the input's optical flow. "vs off" is the PSNR of the mode's frames against
the frame-by-frame output (how much the stabilizing changes them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from img2img.devices import cpu_summary
from img2img.metrics import flicker, psnr
from img2img.runtime import Translator
from img2img.video import TEMPORAL_MODES, VIDEO_TILE, pan_zoom, read_frames, translate_video, write_test_clip


def rows_for(translator: Translator, clip: Path, max_side: int | None, modes: list[str], tmp: Path) -> list[str]:
    """The table rows of one clip: each mode, then the input's own flicker."""
    results = []
    for mode in modes:
        r = translate_video(translator, clip, tmp / f"{clip.stem}-{mode}{clip.suffix}", temporal=mode, max_side=max_side)
        results.append((mode, r, flicker(read_frames(r.path), read_frames(clip, max_side))))
    off = next((list(read_frames(r.path)) for mode, r, _ in results if mode == "off"), None)
    rows = []
    for mode, r, f in results:
        finite = [v for a, b in zip(read_frames(r.path), off or []) if np.isfinite(v := psnr(a, b))]  # frame 0 is off's own
        vs = "-" if not finite or mode == "off" else f"{np.mean(finite):.1f}"
        o = f["output"]
        rows.append(f"| {clip.name} | {mode} | {r.frames} | {r.size[0]}x{r.size[1]} | {r.frames / r.seconds:.2f} | {o['change']:.2f} | {o['warped']:.2f} | {vs} |")
    i = results[0][2]["input"]
    rows.append(f"| {clip.name} | input | {i['frames']} | - | - | {i['change']:.2f} | {i['warped']:.2f} | - |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--clip", type=Path, help="a video to measure instead of the pans")
    p.add_argument("--max-side", type=int, help="with --clip: frames are downscaled to this long side first")
    p.add_argument("--sizes", default="256x256,1280x720", help="without --clip: the pans' frame sizes")
    p.add_argument("--frames", type=int, default=48, help="without --clip: frames per pan")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default=",".join(TEMPORAL_MODES))
    args = p.parse_args()
    modes = args.modes.split(",")
    translator = Translator(args.model, threads=args.threads, tile=VIDEO_TILE)
    print(f"{cpu_summary()}; {translator.describe()}")
    print("\n| clip | mode | frames | size | frames/s | change | warped | vs off (dB) |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.clip is not None:
            clips = [(args.clip, args.max_side)]
        else:
            from skimage import data

            sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
            clips = [(write_test_clip(pan_zoom(data.coffee(), size, args.frames), tmp / f"coffee-{size[0]}x{size[1]}.mp4"), None)
                     for size in sizes]  # fmt: skip
        for clip, max_side in clips:
            for row in rows_for(translator, clip, max_side, modes, tmp):
                print(row, flush=True)


if __name__ == "__main__":
    main()
