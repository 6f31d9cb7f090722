"""Video translation: frames/s and flicker of each temporal mode on one clip, with the input's
own flicker. Prints a table (and the CPU it ran on).

    python benchmarks/video_speed.py --clip Megamind.avi --model checkpoints/pretrained/starry_night/starry_night_AtoB.onnx --max-side 256
    python benchmarks/video_speed.py --model ... --max-side 720     # a pan over a real photo, 720p

Without --clip, the clip is a 48-frame pan and zoom over scikit-image's coffee photo. Flicker
(img2img.metrics.flicker, levels of 255, lower is steadier): "change" is the mean |O_t - O_{t-1}|,
"warped" the same after moving O_{t-1} along the input's optical flow. "vs off" is the PSNR of
the mode's frames against the frame-by-frame output (how much the stabilizing changes them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from img2img.devices import cpu_summary
from img2img.metrics import flicker, psnr
from img2img.runtime import Translator
from img2img.video import TEMPORAL_MODES, pan_zoom, read_frames, translate_video, write_test_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--clip", type=Path)
    p.add_argument("--max-side", type=int, default=256, help="frames are downscaled to this long side first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default=",".join(TEMPORAL_MODES))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip
        if clip is None:
            from skimage import data

            side = args.max_side
            clip = write_test_clip(pan_zoom(data.coffee(), (side // 9 * 16 // 2 * 2, side // 2 * 2), 48), Path(tmp) / "pan.mp4")
            args.max_side = None
        translator = Translator(args.model, threads=args.threads)
        print(f"{cpu_summary()}; {translator.describe()}; clip {clip.name}")
        outs = {}
        rows = []
        for mode in args.modes.split(","):
            r = translate_video(translator, clip, Path(tmp) / f"{mode}{clip.suffix}", temporal=mode, max_side=args.max_side)
            outs[mode] = r.path
            f = flicker(read_frames(r.path), read_frames(clip, args.max_side))
            rows.append((mode, r, f))
        print("\n| mode | frames | size | frames/s | change | warped | vs off (dB) |\n|---|---|---|---|---|---|---|")
        off = list(read_frames(outs["off"])) if "off" in outs else None
        for mode, r, f in rows:
            finite = [v for a, b in zip(read_frames(r.path), off or []) if np.isfinite(v := psnr(a, b))]  # frame 0 is off's own
            vs = "-" if not finite or mode == "off" else f"{np.mean(finite):.1f}"
            o = f["output"]
            print(f"| {mode} | {r.frames} | {r.size[0]}x{r.size[1]} | {r.frames / r.seconds:.2f} | {o['change']:.2f} | {o['warped']:.2f} | {vs} |")
        i = rows[0][2]["input"]
        print(f"| input | {i['frames']} | - | - | {i['change']:.2f} | {i['warped']:.2f} | - |")


if __name__ == "__main__":
    main()
