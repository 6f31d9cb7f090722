"""The run directory: every file name training writes, defined once, and how a generator file is
found in it. No torch import: the runtime and the UI use this too."""

from __future__ import annotations

from pathlib import Path

from img2img import Img2ImgError

CONFIG_FILE = "config.yaml"      # the validated run config (--resume reads it)
STATE_FILE = "last.pt"           # resumable training state (plain tensors)
HEALTH_FILE = "health.json"      # training health findings, when any were raised
SAMPLES_DIR = "samples"          # sample grids, step_NNNNNNN.png
TB_DIR = "tb"                    # TensorBoard logs
EXAMPLES_DIR = "examples"        # beside a shipped model M.onnx: examples/M/*.png, inputs in the style it was trained on
DIRECTIONS = ("AtoB", "BtoA")    # which way a generator maps; CycleGAN has both


def generator_file(direction: str) -> str:
    """G_AtoB.safetensors / G_BtoA.safetensors."""
    check_direction(direction)
    return f"G_{direction}.safetensors"


def onnx_file(name: str, direction: str, both_directions: bool) -> str:
    """The exported model's file name: NAME.onnx, or NAME_AtoB.onnx / NAME_BtoA.onnx for a model
    with both directions (CycleGAN); the UI names directions after these."""
    check_direction(direction)
    return f"{name}_{direction}.onnx" if both_directions else f"{name}.onnx"


def sample_file(step: int) -> str:
    return f"step_{step:07d}.png"


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise Img2ImgError(f"unknown direction {direction!r}; choose AtoB or BtoA")
    return direction


def saved_models(run_dir: Path) -> list[str]:
    """Names of the generator and ONNX files in run_dir (a finished or shipped model)."""
    run_dir = Path(run_dir)
    return sorted(p.name for p in run_dir.glob("G_*.safetensors")) + sorted(p.name for p in run_dir.glob("*.onnx"))


def resolve_generator(source: Path | str, direction: str | None = None) -> Path:
    """The G_*.safetensors file for a run directory (G_AtoB by default) or a generator file.

    A generator file's direction is checked against its own metadata by the caller that reads it
    (checkpoint.read_generator_metadata); here only the path is resolved."""
    source = Path(source)
    if direction is not None:
        check_direction(direction)
    if source.is_dir():
        path = source / generator_file(direction or "AtoB")
        if not path.is_file():
            found = sorted(p.name for p in source.glob("G_*.safetensors"))
            hint = f"it holds {', '.join(found)}" if found else "it holds no G_*.safetensors; has training saved a checkpoint yet?"
            raise Img2ImgError(f"{source} has no {path.name} ({hint})")
        return path
    if not source.is_file():
        raise Img2ImgError(f"{source} does not exist; pass a run directory, a G_*.safetensors or an .onnx file")
    if source.suffix != ".safetensors":
        raise Img2ImgError(f"{source}: expected a run directory or a .safetensors generator file")
    return source
