import pytest

from img2img import Img2ImgError
from img2img.config import available_presets, config_from_yaml, dump_config, load_config


def test_presets_exist_and_validate():
    assert {"pix2pix", "cyclegan", "colorization", "sketch2photo"} <= set(available_presets())
    for name in available_presets():
        cfg = load_config(name)
        assert cfg.name == name  # each preset names its runs (default run dir checkpoints/<name>)
    assert load_config(None).name == "run"


def test_typed_values_are_not_parsed_as_yaml():
    cfg = load_config("pix2pix", [], {"data.root": "2024", "data.dataset": "on", "train.max_steps": 5})
    assert (cfg.data.root, cfg.data.dataset, cfg.train.max_steps) == ("2024", "on", 5)
    with pytest.raises(Img2ImgError, match="unknown config key 'data.rot'"):
        load_config("pix2pix", [], {"data.rot": "x"})


def test_stride_rule_comes_from_the_generator_class():
    from img2img.nets.generators import UnetGenerator

    cfg = load_config("pix2pix", ["model.num_downs=6", "data.crop_size=64", "data.load_size=72"])
    assert cfg.model.generator_spec().size_rules == UnetGenerator.size_rules(num_downs=6) == (64, 64)
    with pytest.raises(Img2ImgError, match="crop_size=96 must be a multiple of 64"):
        load_config("pix2pix", ["model.num_downs=6", "data.crop_size=96", "data.load_size=100"])


def test_vgg_blocks_reach_the_vgg_unet_only():
    cfg = load_config("colorization-cpu", ["model.vgg_blocks=5"])
    assert cfg.model.generator_spec().kwargs["trunk_blocks"] == 5
    assert "trunk_blocks" not in load_config("pix2pix", ["model.vgg_blocks=5"]).model.generator_spec().kwargs
    with pytest.raises(Img2ImgError, match="vgg_blocks"):
        load_config("colorization-cpu", ["model.vgg_blocks=6"])


def test_classic_keys_can_be_overridden():
    cfg = load_config("cyclegan", [
        "data.load_size=143", "data.crop_size=128", "data.batch_size=4", "model.ngf=32", "model.ndf=16",
        "train.lr_g=1e-4", "train.lr_d=4e-4", "train.seed=7", "loss.gan=rahinge",
    ])
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (143, 128, 4)
    assert (cfg.model.ngf, cfg.model.ndf, cfg.train.seed, cfg.loss.gan) == (32, 16, 7, "rahinge")
    assert cfg.train.lr_g == pytest.approx(1e-4) and cfg.train.lr_d == pytest.approx(4e-4)


@pytest.mark.parametrize("override,words", [
    ("data.bach_size=2", ["data.bach_size", "batch_size", "crop_size"]),
    ("trian.lr_g=1", ["trian", "train", "model"]),
    ("loss.gan=wgan", ["loss.gan", "rasgan", "ralsgan", "rahinge", "wgan-gp"]),
    ("data.batch_size=0", ["data.batch_size", "greater than or equal to 1"]),
    ("data.crop_size=512", ["crop_size", "load_size"]),
    ("model=3", ["section", "ngf"]),
    ("nokeyvalue", ["key=value"]),
])
def test_bad_overrides_name_the_key_and_the_choices(override, words):
    with pytest.raises(Img2ImgError) as e:
        load_config("pix2pix", [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(Img2ImgError) as e:
        load_config("pix3pix")
    assert str(e.value) == f"no config file or preset named 'pix3pix'; presets: {', '.join(available_presets())}"
    assert {"pix2pix", "cyclegan", "colorization-cpu"} <= set(available_presets())


def test_unknown_key_in_a_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("method: pix2pix\ndata:\n  crop_sise: 64\n")
    with pytest.raises(Img2ImgError, match=r"data.crop_sise: unknown key; valid keys here: .*crop_size"):
        load_config(str(f))


def test_cross_field_checks():
    with pytest.raises(Img2ImgError, match=r"crop_size=128 must be a multiple of 256.*num_downs") as e:
        load_config("pix2pix", ["data.crop_size=128"])
    assert "Value error" not in str(e.value)
    with pytest.raises(Img2ImgError, match="input_nc=1"):
        load_config("colorization", ["model.input_nc=3"])
    with pytest.raises(Img2ImgError, match="unpaired"):
        load_config("cyclegan", ["data.kind=paired"])
    with pytest.raises(Img2ImgError, match="hint_wash .*data.colour_hints=true"):
        load_config("sketch2photo-hints-cpu", ["data.colour_hints=false", "model.input_nc=1"])
    with pytest.raises(Img2ImgError, match="hint_wash .*model.generator=unet"):
        load_config("sketch2photo-hints-cpu", ["model.generator=resnet"])
    with pytest.raises(Img2ImgError, match="hint_anchor .*model.hint_wash=true"):
        load_config("sketch2photo-hints-cpu", ["model.hint_wash=false", "model.hint_anchor=true"])


def test_dump_and_reload_round_trip():
    cfg = load_config("sketch2photo", ["train.max_steps=10", "model.upsample=bilinear"])
    assert config_from_yaml(dump_config(cfg), "test") == cfg


def test_set_keeps_text_for_text_keys():
    """YAML reads 'off' as false and '2024' as a number; keys that take text get the text."""
    cfg = load_config("pix2pix", ["train.amp=off", "data.root=2024", "data.dataset=on", "model.spectral_norm=off", "train.max_steps=null"])
    assert (cfg.train.amp, cfg.data.root, cfg.data.dataset) == ("off", "2024", "on")
    assert cfg.model.spectral_norm is False and cfg.train.max_steps is None


def test_configs_saved_by_earlier_versions_still_load():
    """A run directory or model saved with a since-retired key (train.grad_norm_limit, as in the
    models shipped before this change) reads back; a preset or --set naming it is refused."""
    old = dump_config(load_config("pix2pix")).replace("  grad_jump:", "  grad_norm_limit: 100.0\n  grad_jump:")
    assert "grad_norm_limit" in old
    assert config_from_yaml(old, "old run") == load_config("pix2pix")
    with pytest.raises(Img2ImgError, match="unknown config key 'train.grad_norm_limit'"):
        load_config("pix2pix", ["train.grad_norm_limit=100"])
