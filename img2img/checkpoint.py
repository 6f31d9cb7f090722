"""Checkpoints: generator weights in safetensors with their architecture (GeneratorSpec), run
config and direction in the metadata, and the resumable training state as a plain-tensor torch
file. File names come from img2img.rundir; atomic writes from img2img.io."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from img2img import Img2ImgError, __version__
from img2img.card import ModelCard, TASKS, describe, read_generator_metadata
from img2img.config import RunConfig, config_from_yaml, dump_config
from img2img.io import atomic_write
from img2img.nets.generators import GeneratorSpec
from img2img.rundir import CONFIG_FILE, resolve_generator


def save_generator(path: Path, net: nn.Module, cfg: RunConfig, direction: str) -> None:
    """Weights as safetensors; metadata holds the architecture (net.spec), the run config and
    the direction."""
    net = getattr(net, "module", net)  # unwrap DDP
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    meta = {"img2img_version": __version__, "generator": net.spec.to_json(), "config": dump_config(cfg), "direction": direction}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def generator_path(source: Path | str, direction: str | None = None) -> Path:
    """The generator file of a run directory or a G_*.safetensors; an explicit direction that
    contradicts a file's own metadata is an error."""
    path = resolve_generator(source, direction)
    if direction is not None and Path(source).is_file():
        own = read_generator_metadata(path).get("direction")
        if own and own != direction:
            raise Img2ImgError(f"{path} is the {own} generator, but direction {direction} was asked for")
    return path


def load_generator(path: Path | str, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a generator from its .safetensors file alone (no flags), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise Img2ImgError(f"generator file {path} does not exist")
    net = GeneratorSpec.from_json(read_generator_metadata(path)["generator"]).build()
    net.load_state_dict(load_file(str(path)))
    return net.to(device).eval()


def model_card(spec: GeneratorSpec, cfg: RunConfig, direction: str, version: str = __version__) -> ModelCard:
    """The card of a generator: what the runtime, the UI and the ONNX metadata need to use it."""
    multiple, min_size = spec.size_rules
    kw = spec.kwargs
    task = TASKS[cfg.data.kind]
    return ModelCard(
        method=cfg.method, direction=direction, task=task, arch=spec.arch, name=cfg.name,
        input_channels=kw["in_channels"], output_channels=kw["out_channels"], size_multiple=multiple,
        min_size=min_size, train_size=cfg.data.crop_size, img2img_version=version,
        description=describe(cfg.method, cfg.name, spec.arch, kw, task, direction, multiple, cfg.data.crop_size),
        generator=spec.to_json(), config=dump_config(cfg),
    )  # fmt: skip


def generator_card(path: Path) -> ModelCard:
    """The card of a G_*.safetensors written by save_generator."""
    meta = read_generator_metadata(path)
    cfg = config_from_yaml(meta.get("config", ""), f"{path} metadata")
    spec = GeneratorSpec.from_json(meta["generator"])
    return model_card(spec, cfg, meta.get("direction", "AtoB"), meta.get("img2img_version", __version__))


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load last.pt with weights_only=True: plain tensors and numbers, no pickled code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise Img2ImgError(f"no checkpoint at {path}; train first, or drop --resume") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        # PyTorch's own message advises weights_only=False, i.e. running the file's code: not ours to repeat.
        if str(e).startswith("Weights only load failed"):
            reason = "it holds pickled Python objects, which img2img never writes and never loads"
        else:
            reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise Img2ImgError(f"{path} is not a loadable img2img checkpoint ({reason}); restore a backup or start a new run") from None


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise Img2ImgError(f"{run_dir} has no {CONFIG_FILE}; is it an img2img run directory?")
    return config_from_yaml(path.read_text(), str(path))
