"""Checkpoints: atomic writes, generator weights in safetensors with their architecture in
the metadata, and the resumable training state as a plain-tensor torch file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from img2img import Img2ImgError, __version__
from img2img.config import RunConfig, config_from_yaml, dump_config
from img2img.nets.generators import build_generator

STATE_FILE = "last.pt"
CONFIG_FILE = "config.yaml"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) into a temp file beside path, fsync, then rename over path.

    os.replace is atomic on POSIX, so a crash (even SIGKILL) mid-write leaves either the old
    file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generator_spec(cfg: RunConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
    """Constructor arguments of the generator that cfg describes; stored with its weights."""
    m = cfg.model
    common = dict(in_channels=in_channels, out_channels=out_channels, ngf=m.ngf, norm=m.norm_g, dropout=m.dropout, upsample=m.upsample)
    if m.generator == "resnet":
        return {"arch": "resnet", "kwargs": {**common, "n_blocks": m.n_blocks}}
    return {"arch": "unet", "kwargs": {**common, "num_downs": m.num_downs}}


def save_generator(path: Path, net: nn.Module, spec: dict[str, Any], cfg: RunConfig, direction: str) -> None:
    """Weights as safetensors; metadata holds the architecture, the run config and the direction."""
    net = getattr(net, "module", net)  # unwrap DDP
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    meta = {"img2img_version": __version__, "generator": json.dumps(spec), "config": dump_config(cfg), "direction": direction}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_generator_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise Img2ImgError(f"{path}: not a readable safetensors file ({e})") from None
    if "generator" not in meta:
        raise Img2ImgError(f"{path}: no img2img generator metadata; was it written by img2img?")
    return meta


def load_generator(path: Path | str, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a generator from its .safetensors file alone (no flags), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise Img2ImgError(f"generator file {path} does not exist")
    spec = json.loads(read_generator_metadata(path)["generator"])
    net = build_generator(spec["arch"], **spec["kwargs"])
    net.load_state_dict(load_file(str(path)))
    return net.to(device).eval()


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load last.pt with weights_only=True: plain tensors and numbers, no pickled code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise Img2ImgError(f"no checkpoint at {path}; train first, or drop --resume") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise Img2ImgError(f"{path} is not a loadable img2img checkpoint ({e}); restore a backup or start a new run") from None


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise Img2ImgError(f"{run_dir} has no {CONFIG_FILE}; is it an img2img run directory?")
    return config_from_yaml(path.read_text(), str(path))
