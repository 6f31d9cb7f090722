"""Known datasets: the CycleGAN and pix2pix sets published by the Berkeley authors.

Naming scheme: a name is the upstream file name (``horse2zebra`` for ``horse2zebra.zip``).
Where a pix2pix set has the same upstream name as a CycleGAN set (facades, maps, cityscapes),
the CycleGAN one keeps the plain name and the pix2pix one gets the suffix ``_pix2pix``:

- CycleGAN (unpaired, ``.zip``): apple2orange, summer2winter_yosemite, horse2zebra, monet2photo,
  cezanne2photo, ukiyoe2photo, vangogh2photo, maps, cityscapes, facades, iphone2dslr_flower,
  ae_photos.
- pix2pix (paired, ``.tar.gz``): facades_pix2pix, maps_pix2pix, edges2shoes, edges2handbags,
  night2day, cityscapes_pix2pix.

The cityscapes sets are listed but not downloadable: the Cityscapes licence forbids
redistribution, so the user prepares them (``--data DIR``), as upstream asks.

Where data lives: ``IMG2IMG_DATA`` (default ``~/.cache/img2img/datasets``) holds the archive
``<url file name>`` and its recorded ``.sha256``, and the dataset folder ``<name>/`` in the layout
training reads. ``IMG2IMG_DATASETS_URL`` replaces the server (a mirror with the same paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from img2img import Img2ImgError

DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu"
BASE_URL_ENV = "IMG2IMG_DATASETS_URL"
DATA_ROOT_ENV = "IMG2IMG_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/img2img/datasets")
# Written inside a dataset folder once it is complete; a folder without it is redone.
COMPLETE_MARKER = ".img2img-complete"

CYCLEGAN_LAYOUT = "trainA/ trainB/ testA/ testB/ (unpaired images)"
PIX2PIX_LAYOUT = "train/AB/ val/AB/ (A|B side by side)"

CITYSCAPES_NOTE = (
    "the Cityscapes licence does not allow redistribution: register at https://www.cityscapes-dataset.com, "
    "download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, build the image pairs yourself "
    "(e.g. with prepare_cityscapes_dataset.py from junyanz/pytorch-CycleGAN-and-pix2pix) and train with --data DIR"
)


@dataclass(frozen=True)
class DatasetInfo:
    """One downloadable dataset. url_path is None for sets the user must prepare (see note)."""

    name: str
    method: Literal["cyclegan", "pix2pix"]
    url_path: str | None  # relative to the base URL, e.g. "cyclegan/datasets/horse2zebra.zip"
    archive: Literal["zip", "tar.gz"]
    size_mb: int  # approximate archive size, for the table and the user's patience (0: unknown)
    layout: str  # what the normalized folder holds
    preset: str  # the configs/ preset `train --dataset NAME` applies
    required: tuple[str, ...] = ()  # subfolders that must exist after extraction
    sha256: str | None = None  # pinned digest when known; otherwise the first download is recorded
    note: str = ""

    @property
    def downloadable(self) -> bool:
        return self.url_path is not None

    @property
    def archive_name(self) -> str:
        """The archive's file name in the cache (the URL's last component)."""
        return self.url_path.rsplit("/", 1)[-1] if self.url_path else f"{self.name}.{self.archive}"


def _cyclegan(
    name: str, size_mb: int, layout: str = CYCLEGAN_LAYOUT, required: tuple[str, ...] = ("trainA", "trainB")
) -> DatasetInfo:
    return DatasetInfo(name, "cyclegan", f"cyclegan/datasets/{name}.zip", "zip", size_mb, layout, "cyclegan", required)


def _pix2pix(name: str, upstream: str, size_mb: int, layout: str = PIX2PIX_LAYOUT) -> DatasetInfo:
    url = f"pix2pix/datasets/{upstream}.tar.gz"
    return DatasetInfo(name, "pix2pix", url, "tar.gz", size_mb, layout, "pix2pix", ("train/AB",))


# Sizes are approximate archive sizes in MB (horse2zebra: design.md §5; others as published).
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        _cyclegan("apple2orange", 75),
        _cyclegan("summer2winter_yosemite", 127),
        _cyclegan("horse2zebra", 111),
        _cyclegan("monet2photo", 291),
        _cyclegan("cezanne2photo", 267),
        _cyclegan("ukiyoe2photo", 279),
        _cyclegan("vangogh2photo", 292),
        _cyclegan("maps", 1380),
        DatasetInfo(
            "cityscapes", "cyclegan", None, "zip", 0, CYCLEGAN_LAYOUT, "cyclegan", ("trainA", "trainB"),
            note=CITYSCAPES_NOTE,
        ),
        _cyclegan("facades", 34),
        _cyclegan("iphone2dslr_flower", 324),
        # Photos for evaluating the painting styles; its folders are kept as they come.
        _cyclegan("ae_photos", 10, layout="test photos (evaluation only, no trainA/trainB)", required=()),
        _pix2pix("facades_pix2pix", "facades", 29, "train/AB/ val/AB/ test/AB/ (A|B side by side: photo|labels)"),
        _pix2pix("maps_pix2pix", "maps", 239, "train/AB/ val/AB/ (A|B side by side: aerial|map)"),
        _pix2pix("edges2shoes", "edges2shoes", 2165),
        _pix2pix("edges2handbags", "edges2handbags", 8600),
        _pix2pix("night2day", "night2day", 1900, "train/AB/ val/AB/ test/AB/ (A|B side by side: night|day)"),
        DatasetInfo(
            "cityscapes_pix2pix", "pix2pix", None, "tar.gz", 0, PIX2PIX_LAYOUT, "pix2pix", ("train/AB",),
            note=CITYSCAPES_NOTE,
        ),
    ]
}


def get_dataset(name: str) -> DatasetInfo:
    """The registry entry for name; an unknown name is an error that lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        hint = ""
        if f"{name}_pix2pix" in DATASETS:
            hint = f" (the paired pix2pix version is '{name}_pix2pix')"
        raise Img2ImgError(
            f"unknown dataset '{name}'{hint}; known datasets: {', '.join(sorted(DATASETS))}. "
            "To train on your own folder, pass --data DIR"
        ) from None


def base_url(url: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The download server: url if given, else $IMG2IMG_DATASETS_URL, else the Berkeley server."""
    return (url or env.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def dataset_url(info: DatasetInfo, url: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """Full URL of the dataset's archive on the chosen server."""
    if info.url_path is None:
        raise Img2ImgError(f"dataset '{info.name}' cannot be downloaded: {info.note}")
    return f"{base_url(url, env)}/{info.url_path}"


def data_root(root: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """The dataset cache: root if given, else $IMG2IMG_DATA, else ~/.cache/img2img/datasets."""
    chosen = root if root is not None else env.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


def dataset_dir(info: DatasetInfo, root: Path) -> Path:
    """Where the normalized dataset lives under root."""
    return Path(root) / info.name


def is_downloaded(info: DatasetInfo, root: Path) -> bool:
    """True when the dataset folder is complete (its marker is written last)."""
    return (dataset_dir(info, root) / COMPLETE_MARKER).is_file()


def format_table(root: Path | str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """A plain-text table of every dataset: name, method, approximate size, downloaded or not."""
    root = data_root(root, env)
    rows = [("name", "method", "size", "downloaded")]
    for info in DATASETS.values():
        if not info.size_mb:
            size = "-"
        else:
            size = f"~{info.size_mb / 1000:.1f} GB" if info.size_mb >= 1000 else f"~{info.size_mb} MB"
        if not info.downloadable:
            state = "manual (licence)"
        else:
            state = "yes" if is_downloaded(info, root) else "no"
        rows.append((info.name, info.method, size, state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"\ncache: {root} (set {DATA_ROOT_ENV} to move it; mirror: {BASE_URL_ENV})")
    return "\n".join(lines)
