"""Typed configs: overrides, TOML round trip, unknown keys and bad values refused with a suggestion."""

import pytest

from steadydiff.config import RunConfig, apply_overrides, from_dict, load_toml, to_toml, validate
from steadydiff.errors import ConfigError


def test_overrides_are_typed():
    cfg = apply_overrides(RunConfig(), ["train.lr=3e-4", "train.steps=1e3", "net.unet.channel_mult=1,2,2",
                                        "data.hflip=true", "diffusion.sigma_data=none"])
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 1000
    assert cfg.net.unet.channel_mult == (1, 2, 2)
    assert cfg.data.hflip is True and cfg.diffusion.sigma_data is None


@pytest.mark.parametrize("item,match", [
    ("train.lrr=1", "Did you mean 'train.lr'"),
    ("trian.steps=5", "Did you mean 'train.steps'"),
    ("train.steps=many", "expected an integer"),
    ("diffusion.parameterization=epsilon", "Did you mean 'eps'"),
    ("train.optimizer=adamm", "Did you mean 'adam"),
    ("data.hflip=maybe", "true or false"),
    ("train.lr", "key=value"),
    ("train=1", "unknown config key 'train'"),
])
def test_bad_keys_and_values_fail_at_once(item, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(RunConfig(), [item])


@pytest.mark.parametrize("item,match", [("train.steps=0", "train.steps must be > 0"),
                                         ("net.unet.attn_levels=5", "out of range"),
                                         ("diffusion.sigma_min=100", "sigma_min < diffusion.sigma_max"),
                                         ("net.unet.dropout=1.5", r"\[0, 1\)"),
                                         ("data.augment=1.5", r"data.augment is a probability in \[0, 1\]"),
                                         ("guard.weight_growth=0.9", "guard.weight_growth must be > 1"),
                                         ("guard.growth_steps=-1", "guard.growth_steps must be ≥ 0"),
                                         ("guard.growth_backoff=1", "guard.growth_backoff must lie in")])
def test_cross_field_checks(item, match):
    with pytest.raises(ConfigError, match=match):
        validate(apply_overrides(RunConfig(), [item]))


def test_toml_round_trip(tmp_path):
    cfg = apply_overrides(RunConfig(), ["train.lr=1e-4", "net.kind=mlp", "diffusion.sigma_data=0.7"])
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    assert load_toml(path) == cfg


def test_toml_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nlearning_rate = 1e-3\n")
    with pytest.raises(ConfigError, match="bad.toml.*train.learning_rate"):
        load_toml(path)
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict({"train": {"lr": "fast"}})
