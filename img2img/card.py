"""The model card: what a runtime or UI needs to know to use a generator (task, direction,
channels, size rules, the run's name and config). No torch import: reading a card from an
.onnx file or a generator's safetensors header costs no PyTorch start-up."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from img2img import Img2ImgError, __version__
from img2img.io import NORMALIZATION, channel_name

if TYPE_CHECKING:
    from img2img.config import RunConfig

# data.kind of the training run -> the task a model card names.
TASKS = {"unpaired": "style", "colorization": "colorization", "sketch": "sketch2photo", "paired": "paired"}


@dataclass(frozen=True)
class ModelCard:
    """Stored as ONNX metadata_props (all values strings) by img2img.export; built from the
    safetensors metadata for PyTorch (img2img.checkpoint.generator_card)."""

    method: str             # pix2pix | cyclegan
    direction: str          # AtoB | BtoA: which way this generator maps
    task: str               # style | colorization | sketch2photo | paired
    arch: str               # resnet | unet
    input_channels: int     # 1 = grey input (colorization, sketch), 3 = RGB
    output_channels: int
    size_multiple: int      # H and W must be multiples of this (the runtime pads)
    min_size: int           # smallest H and W the network accepts (reflection pads need room)
    train_size: int         # crop size it was trained at; the scale it works best at
    name: str = ""          # the run's name (config key `name`)
    normalization: str = NORMALIZATION
    img2img_version: str = __version__
    description: str = ""
    generator: str = ""     # JSON {"arch", "kwargs"}: the constructor arguments
    config: str = ""        # YAML of the run config

    _INT_FIELDS = ("input_channels", "output_channels", "size_multiple", "min_size", "train_size")

    @property
    def takes_colour_hints(self) -> bool:
        """A sketch model trained with data.colour_hints: RGB drawings that may carry colour marks."""
        return self.task == "sketch2photo" and self.input_channels == 3

    def to_metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "ModelCard":
        missing = [n for n in ("method", "direction", "task", "arch", *cls._INT_FIELDS) if n not in meta]
        if missing:
            raise Img2ImgError(
                f"{source}: no img2img model card (missing {', '.join(missing)}); export it with `img2img export`"
            )
        values: dict[str, Any] = {n: meta[n] for n in cls.__dataclass_fields__ if n in meta}
        try:
            for n in cls._INT_FIELDS:
                values[n] = int(meta[n])
        except ValueError as e:
            raise Img2ImgError(f"{source}: malformed img2img model card ({e})") from None
        return cls(**values)

    def run_config(self) -> "RunConfig":
        """The training run's config, parsed and validated (imports the config module)."""
        from img2img.config import config_from_yaml

        return config_from_yaml(self.config, f"the model card of {self.name or 'this model'}")


def generator_shape(arch: str, kwargs: dict[str, Any]) -> str:
    """A generator's depth in words, for cards: "9 residual blocks", "7 downsamplings", ..."""
    if arch == "resnet":
        return f"{kwargs.get('n_blocks')} residual blocks"
    trunk = f" (the first {kwargs['trunk_blocks'] - 1} in a frozen VGG16 trunk)" if arch == "vgg_unet" else ""
    wash = ", colour marks spread over the image" if kwargs.get("hint_wash") else ""
    wash += " and setting the output's local colour" if kwargs.get("hint_anchor") else ""
    return f"{kwargs.get('num_downs')} downsamplings{trunk}{wash}"


def describe(method: str, name: str, arch: str, kwargs: dict[str, Any], task: str, direction: str,
             multiple: int, train_size: int) -> str:
    """The card's one-paragraph description (ONNX doc_string, UI "Model details")."""
    shape = generator_shape(arch, kwargs)
    return (
        f"img2img {method} generator '{name}' ({arch}, ngf {kwargs.get('ngf')}, {shape}, "
        f"{kwargs.get('norm')} norm) for {task}, mapping {direction[0]} to {direction[-1]}; "
        f"input {channel_name(kwargs['in_channels'])} and output {channel_name(kwargs['out_channels'])} "
        f"scaled to [-1, 1] as x/127.5 - 1, NCHW float32; H and W multiples of {multiple} (pad with reflection "
        f"and crop back); trained on {train_size} px crops."
    )


def read_onnx_card(path: Path | str) -> ModelCard:
    """The model card stored in an exported .onnx file's metadata_props."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several untyped errors
        raise Img2ImgError(f"{path}: not a readable ONNX file ({e})") from None
    return ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, str(path))


def read_generator_metadata(path: Path | str) -> dict[str, str]:
    """The metadata of a G_*.safetensors written by img2img (read from the header, no torch)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise Img2ImgError(f"{path}: not a readable safetensors file ({e})") from None
    if "generator" not in meta:
        raise Img2ImgError(f"{path}: no img2img generator metadata; was it written by img2img?")
    return meta
