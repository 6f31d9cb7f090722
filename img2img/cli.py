"""Command line: img2img train | datasets | export | translate | serve | eval."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from img2img import Img2ImgError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Image-to-image translation: train pix2pix / CycleGAN, export to ONNX, translate, serve.",
)
datasets_app = typer.Typer(no_args_is_help=True, help="List and download the classic CycleGAN / pix2pix datasets.")
app.add_typer(datasets_app, name="datasets")


def make_logger(rank: int = 0) -> logging.Logger:
    log = logging.getLogger("img2img")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("img2img: %(message)s" if rank == 0 else f"img2img[rank {rank}]: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False
    return log


@app.command()
def train(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Preset name in configs/ (pix2pix, cyclegan, colorization, sketch2photo) or a YAML file."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own data: the folder holding train/ (paired: train/AB or train/A + train/B) or trainA/ + trainB/ (unpaired); for colorization/sketch, any photo folder."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A classic dataset by name (see `img2img datasets list`); downloaded when missing."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set train.lr_g=1e-4 (repeatable)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where checkpoints, samples and logs go [default: checkpoints/<name>]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last.pt (config from its config.yaml)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if usable, else CPU), cpu or cuda."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps in total (instead of the epochs in the config)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a model. Under torchrun, each process trains on its shard (DDP); data.batch_size is per process."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from img2img.checkpoint import STATE_FILE, load_run_config
    from img2img.config import apply_overrides, load_config, validate
    from img2img.train import init_distributed, train as run_training

    overrides = list(set_)
    if data is not None:
        overrides.append(f"data.root={data}")
    if dataset is not None:
        overrides.append(f"data.dataset={dataset}")
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")

    if resume:
        if run_dir is None:
            raise Img2ImgError("--resume needs --run-dir, the folder of the run to continue")
        saved = load_run_config(run_dir).model_dump(mode="json")
        cfg = validate(apply_overrides(saved, overrides), str(run_dir / "config.yaml"))
    else:
        preset = config
        if preset is None and dataset is not None:
            from img2img.data.registry import get_dataset

            preset = get_dataset(dataset).preset
        if preset is None:
            raise Img2ImgError("no config: pass --config PRESET (pix2pix, cyclegan, colorization, sketch2photo) or --dataset NAME")
        if dataset is not None and not any(o.startswith("name=") for o in overrides):
            overrides.insert(0, f"name={dataset}")
        cfg = load_config(preset, overrides)
        run_dir = run_dir or Path("checkpoints") / cfg.name
        if (run_dir / STATE_FILE).exists():
            raise Img2ImgError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --run-dir")

    ddp, dev = init_distributed(device)
    log = make_logger(ddp.rank)
    data_root = _data_root(cfg, ddp, log)
    with logging_redirect_tqdm([log]):
        run_training(cfg, data_root, run_dir, dev, log, resume=resume, ddp=ddp, progress=progress)
    if ddp.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


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


@datasets_app.command("list")
def datasets_list(root: Optional[Path] = typer.Option(None, "--root", help="Dataset cache [default: $IMG2IMG_DATA or ~/.cache/img2img/datasets].")) -> None:
    """Show the known datasets, their size and whether they are downloaded."""
    from img2img.data.registry import format_table

    typer.echo(format_table(root))


@datasets_app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="Dataset name from `img2img datasets list`."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset cache [default: $IMG2IMG_DATA or ~/.cache/img2img/datasets]."),
) -> None:
    """Download and unpack a dataset (resumable, checksummed)."""
    from img2img.data.download import ensure_dataset

    typer.echo(ensure_dataset(name, root, make_logger()))


def main() -> None:
    try:
        app()
    except Img2ImgError as e:
        print(f"img2img: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("img2img: aborted", file=sys.stderr)
        sys.exit(130)
