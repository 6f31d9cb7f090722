"""What colorization's inference defaults cost on this machine: the shipped colorization model
through the Translator (as `img2img translate` and the web UI run it), one pass against the
flip average (the default: the photo and its mirror image in one batch), at the default colour
size (256 px) and at full size, on a real photo at several sizes.

    .venv/bin/python benchmarks/colorization_speed.py
    .venv/bin/python benchmarks/colorization_speed.py --sizes 512,2048 --rounds 7 --backend onnx

The variants are timed interleaved: each round runs every variant once, in turn, so load on the
machine hits all of them alike; the table gives the median over rounds after one warm-up call
each, and the ratio to the one-pass default of the same photo size."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from img2img.data.derived import luminance
from img2img.devices import cpu_summary
from img2img.runtime import Translator

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "checkpoints" / "pretrained" / "colorization" / "colorization.onnx"
VARIANTS = {  # name: Translator keyword arguments
    "one pass, 256 px": {"flip_average": False},
    "flip average, 256 px (default)": {"flip_average": True},
    "one pass, full size": {"flip_average": False, "work_size": 0},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512,1024,2048", help="long sides of the photo, comma-separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--backend", default="auto", help="auto (as translate picks), onnx or torch")
    args = p.parse_args()
    translators = {name: Translator(MODEL, backend=args.backend, **kw) for name, kw in VARIANTS.items()}
    print(f"CPU: {cpu_summary()}; backend: {next(iter(translators.values())).describe()}\n")
    print("| photo | variant | median ms | vs one pass, 256 px |")
    print("|---|---|---|---|")
    for side in (int(s) for s in args.sizes.split(",")):
        photo = Image.fromarray(data.chelsea())  # 451 x 300
        photo = photo.resize((side, round(side * photo.height / photo.width)), Image.Resampling.BICUBIC)
        grey = luminance(np.asarray(photo))[:, :, None]
        times: dict[str, list[float]] = {name: [] for name in translators}
        for t in translators.values():
            t.translate_arrays([grey])  # warm-up
        for _ in range(args.rounds):
            for name, t in translators.items():
                start = time.perf_counter()
                t.translate_arrays([grey])
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["one pass, 256 px"])
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"| {photo.width}x{photo.height} | {name} | {m * 1000:.0f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
