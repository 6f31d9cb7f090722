"""Build the training and test folders for the shipped models from photos that packages ship.

    pip install --no-deps mvtb-data==1.6.1          # 130 MB wheel of real photos (MIT)
    python scripts/shipped_data.py --out ~/img2img-shipped-data

Sources (see ../shared/design.md section 4; nothing is downloaded at training time):
- train photos: mvtb-data's campus photos (buildings, trees) and its large photos (church,
  Eiffel tower, road, parks, walls, rocks, street, castle, roof, tulips);
- same-source test photos: mvtb-data's campus/holdout/;
- different-source test photos: scikit-image's bundled colour photos and the photos in OpenCV's
  sample data (the opencv-python sdist, fetched with `pip download` unless --opencv-sdist is given);
- the painting for style transfer: Van Gogh's "The Starry Night" from the same OpenCV sample data.

Train/test split is by source photo, never by crop. Photos are stored as PNG with the longer
side at most --max-side pixels, so the data loader decodes them quickly.

Output:
    OUT/photos/train/*.png      colorization and sketch2photo training photos
    OUT/photos/test/*.png       same-source held-out photos (campus holdout)
    OUT/heldout/*.png           different-source held-out photos (scikit-image + OpenCV)
    OUT/style/trainA/ -> photos, OUT/style/trainB/starry_night.png, OUT/style/testA/ -> heldout
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MVTB_PHOTOS = [
    "church.png", "eiffel-1.png", "eiffel-2.png", "road.png", "parks.png", "walls-l.png", "rocks2-l.png",
    "notre-dame.png", "street.png", "castle.png", "building2-1.png", "roof.png",
] + [f"flowers{i}.png" for i in range(1, 10)]  # fmt: skip
OPENCV_SDIST = "opencv-python==5.0.0.93"
# Colour photos of real scenes in OpenCV's samples/data (no drawings, charts, text or lena).
OPENCV_PHOTOS = [
    "apple.jpg", "orange.jpg", "fruits.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "home.jpg",
    "messi5.jpg", "aero1.jpg", "castle.jpg", "squirrel_cls.jpg", "leuvenA.jpg", "graf1.png", "smarties.png",
]  # fmt: skip
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]
PAINTING = "starry_night.jpg"


def package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{name} is not installed; run: {install_hint}")
    return Path(spec.submodule_search_locations[0])


def save(img: Image.Image, dst: Path, max_side: int) -> None:
    """RGB (alpha composited on white), longer side <= max_side (area-averaged), PNG."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BOX)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.save(dst)


def opencv_samples(sdist: Path | None, tmp: Path) -> Path:
    """The samples/data folder of the opencv-python sdist (downloaded with pip when not given)."""
    if sdist is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "opencv-python",
                        OPENCV_SDIST, "-d", str(tmp)], check=True)  # fmt: skip
        sdist = next(tmp.glob("opencv_python-*.tar.gz"))
    wanted = set(OPENCV_PHOTOS) | {PAINTING}
    with tarfile.open(sdist) as tar:
        # Only the named files directly in samples/data/; the "data" filter refuses links and "..".
        members = [m for m in tar.getmembers() if m.isfile() and m.name.partition("/opencv/samples/data/")[2] in wanted]
        tar.extractall(tmp, members=members, filter="data")
    return next(tmp.glob("*/opencv/samples/data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--opencv-sdist", type=Path, help="opencv_python-*.tar.gz (else fetched with pip download)")
    p.add_argument("--max-side", type=int, default=640)
    args = p.parse_args()
    out = args.out.expanduser()
    images = package_dir("mvtbdata", "pip install --no-deps mvtb-data==1.6.1") / "images"

    for f in sorted((images / "campus").glob("*.png")):
        save(Image.open(f), out / "photos/train" / f"campus-{f.name}", args.max_side)
    for name in MVTB_PHOTOS:
        save(Image.open(images / name), out / "photos/train" / name.replace(".jpg", ".png"), args.max_side)
    for f in sorted((images / "campus/holdout").glob("*.png")):
        save(Image.open(f), out / "photos/test" / f"campus-{f.name}", args.max_side)

    import skimage.data

    for name in SKIMAGE_PHOTOS:
        save(Image.fromarray(np.asarray(getattr(skimage.data, name)())), out / "heldout" / f"skimage-{name}.png", args.max_side)
    with tempfile.TemporaryDirectory() as tmp:
        samples = opencv_samples(args.opencv_sdist, Path(tmp))
        for name in OPENCV_PHOTOS:
            save(Image.open(samples / name), out / "heldout" / f"opencv-{Path(name).stem}.png", args.max_side)
        save(Image.open(samples / PAINTING), out / "style/trainB/starry_night.png", args.max_side)

    for split, src in (("trainA", "photos/train"), ("testA", "heldout")):
        link = out / "style" / split
        if not link.exists():
            link.symlink_to(Path("..") / src, target_is_directory=True)
    counts = {d: len(list((out / d).glob("*.png"))) for d in ("photos/train", "photos/test", "heldout", "style/trainB")}
    print(f"wrote {out}: " + ", ".join(f"{d} {n}" for d, n in counts.items()))


if __name__ == "__main__":
    main()
