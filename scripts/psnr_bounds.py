"""What PSNR guesses that do not look at a translation's input reach on a set of photos: the
bars a model's PSNR is read against. A model that has learnt nothing about a photo reaches the
first row; the others are oracles that know part of the photo.

    python scripts/psnr_bounds.py --data DATA     # DATA: the output of scripts/shipped_data.py

Rows, each the mean PSNR over the photos of DATA/heldout and of DATA/photos/test:
  the training photos' mean colour       one constant colour for every photo and pixel
  each photo's own mean grey level       that photo's mean of R, G and B, with the training mean's chroma
  each photo's own mean colour           that photo's mean colour
  each photo blurred (Gaussian, 16 px)   its layout of light and colour, no detail
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from img2img.data.images import list_images, load_image
from img2img.metrics import psnr


def constant(colour: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.clip(np.round(colour), 0, 255).astype(np.uint8), shape)


def guesses(photo: Image.Image, train_mean: np.ndarray) -> dict[str, np.ndarray]:
    rgb = np.asarray(photo)
    own = rgb.reshape(-1, 3).mean(0)
    return {
        "the training photos' mean colour": constant(train_mean, rgb.shape),
        # The same level added to R, G and B moves the luma by as much and keeps Cb and Cr.
        "each photo's own mean grey level, the training mean's chroma": constant(train_mean - train_mean.mean() + own.mean(), rgb.shape),
        "each photo's own mean colour": constant(own, rgb.shape),
        "each photo blurred (Gaussian, 16 px)": np.asarray(photo.filter(ImageFilter.GaussianBlur(16))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="output folder of scripts/shipped_data.py")
    args = p.parse_args()
    train_mean = np.mean([np.asarray(load_image(f)).reshape(-1, 3).mean(0) for f in list_images(args.data / "photos" / "train")], axis=0)
    sets = {"different source": args.data / "heldout", "training sources": args.data / "photos" / "test"}
    scores: dict[str, dict[str, float]] = {}
    for set_name, folder in sets.items():
        per_photo: dict[str, list[float]] = {}
        for f in list_images(folder):
            photo = load_image(f)
            for row, guess in guesses(photo, train_mean).items():
                per_photo.setdefault(row, []).append(psnr(guess, np.asarray(photo)))
        for row, values in per_photo.items():
            scores.setdefault(row, {})[set_name] = float(np.mean(values))
    print(f"| guess | {' | '.join(f'{s}: PSNR' for s in sets)} |")
    print(f"|---|{'---|' * len(sets)}")
    for row, by_set in scores.items():
        print(f"| {row} | {' | '.join(f'{by_set[s]:.2f}' for s in sets)} |")


if __name__ == "__main__":
    main()
