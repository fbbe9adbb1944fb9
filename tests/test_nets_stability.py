"""Stability options of the backbones: the normalisation choice and the magnitude-preserving layers."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from steadydiff.config import RunConfig, apply_overrides, load_toml, to_toml, validate
from steadydiff.errors import ConfigError
from steadydiff.nets import NetConfig, build_backbone
from steadydiff.nets.config import MLPConfig, UNetConfig
from steadydiff.nets.layers import make_norm, norm_factory
from steadydiff.nets.mp import MPConv, mp_cat, mp_silu, mp_sum
from test_nets import assert_uses_x_and_noise

SMALL_UNET = dict(channels=16, channel_mult=(1, 2), groups=4, head_channels=8)
NORM_TYPES = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)


def small_cfg(mlp: dict | None = None, **unet) -> NetConfig:
    return NetConfig(mlp=MLPConfig(width=32, blocks=2, emb_dim=16, **(mlp or {})),
                     unet=UNetConfig(**{**SMALL_UNET, **unet}))


def rms(x: torch.Tensor) -> float:
    return x.square().mean().sqrt().item()


def train_steps(net: torch.nn.Module, shape: tuple[int, ...], steps: int, lr: float = 1e-2) -> float:
    """Fit F(x, c) ≈ x + tanh(c), a target that depends on both inputs; return the last loss."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        x, c = torch.randn(16, *shape), torch.randn(16)
        loss = (net(x, c) - x - torch.tanh(c).view(-1, *[1] * len(shape))).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


# --------------------------------------------------------------------------------------------------
# Normalisation choice


@pytest.mark.parametrize("norm", ["group", "layer", "batch", "none"])
def test_unet_norms_build_and_train(norm):
    torch.manual_seed(0)
    net = build_backbone(small_cfg(norm=norm), (1, 8, 8))
    norms = {type(m) for m in net.modules() if isinstance(m, NORM_TYPES)}
    assert norms == {"group": {torch.nn.GroupNorm}, "layer": {torch.nn.GroupNorm},
                     "batch": {torch.nn.BatchNorm2d}, "none": set()}[norm]
    assert math.isfinite(train_steps(net, (1, 8, 8), steps=2))
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(torch.randn(3, 1, 8, 8), torch.randn(3))).all()


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_mlp_norms_build_and_train(norm):
    torch.manual_seed(0)
    net = build_backbone(small_cfg(mlp={"norm": norm}), (2,))
    n_norms = sum(isinstance(m, torch.nn.LayerNorm) for m in net.modules())
    assert n_norms == (3 if norm == "layer" else 0)  # one per block and one before the output
    assert math.isfinite(train_steps(net, (2,), steps=2))


def test_batch_norm_logs_why_it_is_a_bad_idea(caplog):
    with caplog.at_level(logging.WARNING, logger="steadydiff"):
        build_backbone(small_cfg(norm="group"), (1, 8, 8))
        assert not caplog.records
        build_backbone(small_cfg(norm="batch"), (1, 8, 8))
    (record,) = caplog.records  # once per network, not once per layer
    assert record.name == "steadydiff" and record.levelno == logging.WARNING
    for words in ("couples the samples", "noise levels", "training", "harm diffusion models", "'group'"):
        assert words in record.getMessage()


def test_norm_builders_refuse_unknown_kinds():
    assert isinstance(make_norm("none", 12, 8), torch.nn.Identity)
    with pytest.raises(ConfigError, match="unknown norm"):
        norm_factory("batchnorm", 8)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="net.mlp.norm"):
        build_backbone(small_cfg(mlp={"norm": "group"}), (2,))


# --------------------------------------------------------------------------------------------------
# Magnitude-preserving layers


def test_mp_silu_sum_and_cat_preserve_unit_magnitude():
    torch.manual_seed(0)
    a, b = torch.randn(2, 1_000_000)
    # mp_silu keeps the magnitude (root mean square); its output has a mean, so not the variance.
    assert rms(mp_silu(a)) == pytest.approx(1.0, abs=0.01)
    for t in (0.0, 0.3, 0.5, 0.9):
        assert rms(mp_sum(a, b, t)) == pytest.approx(1.0, abs=0.01)
        assert mp_sum(a, b, t).var().item() == pytest.approx(1.0, abs=0.01)
    x, y = torch.randn(4000, 16), torch.randn(4000, 48)
    for t in (0.3, 0.5):
        out = mp_cat(x, y, t)
        assert out.shape == (4000, 64) and rms(out) == pytest.approx(1.0, abs=0.01)
        energy_x, energy_y = out[:, :16].square().sum().item(), out[:, 16:].square().sum().item()
        assert energy_x / energy_y == pytest.approx((1 - t) ** 2 / t**2, rel=0.03)


@pytest.mark.parametrize("kernel,shape", [(None, (512, 256)), (1, (16, 64, 12, 12)), (3, (16, 64, 12, 12))])
def test_mpconv_keeps_unit_magnitude_whatever_the_weight_scale(kernel, shape):
    torch.manual_seed(0)
    layer = MPConv(shape[1], 96, kernel)
    x = torch.randn(shape)
    out = layer(x)
    assert out.shape == ((512, 96) if kernel is None else (16, 96, 12, 12))
    if kernel == 3:
        out = out[..., 1:-1, 1:-1]  # away from the zero padding
    assert out.std().item() == pytest.approx(1.0, rel=0.1)
    with torch.no_grad():
        layer.weight.mul_(100.0)
    layer.eval()
    torch.testing.assert_close(layer(x), layer.train()(x), rtol=1e-4, atol=1e-4)
    assert not list(layer.buffers()) and [n for n, _ in layer.named_parameters()] == ["weight"]  # no bias


def test_forced_weight_normalisation_after_a_large_step():
    torch.manual_seed(0)
    layer = MPConv(8, 6, 3)
    fan_in = 8 * 3 * 3

    def row_norms() -> torch.Tensor:
        return layer.weight.detach().flatten(1).norm(dim=1)

    torch.testing.assert_close(row_norms(), torch.full((6,), math.sqrt(fan_in)), rtol=1e-3, atol=0)
    opt = torch.optim.SGD(layer.parameters(), lr=1e3)
    x = torch.randn(4, 8, 5, 5)
    for _ in range(3):
        layer(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        assert (row_norms() - math.sqrt(fan_in)).abs().max() > 0.1  # the step left the sphere
        layer.eval()
        before = layer.weight.detach().clone()
        layer(x)
        assert torch.equal(layer.weight, before), "eval forward must not write the weight (EMA copies)"
        layer.train()
        layer(x)
        torch.testing.assert_close(row_norms(), torch.full((6,), math.sqrt(fan_in)), rtol=1e-3, atol=0)


def mp_cfg() -> NetConfig:
    return small_cfg(mlp={"mp": True}, mp=True, attn_levels=(0, 1))


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (3, 7, 7), (3, 5, 5)])
def test_mp_nets_start_at_zero_and_respond_to_c_noise(shape):
    torch.manual_seed(0)
    net = build_backbone(mp_cfg(), shape)
    assert not any(isinstance(m, NORM_TYPES) for m in net.modules())
    assert all(n.endswith((".weight", ".gain")) for n, _ in net.named_parameters())  # no biases
    assert all(type(m).__name__ in ("MPConv", "MPInput") for m in net.modules() if hasattr(m, "weight"))
    x = torch.randn(3, *shape)
    out = net(x, torch.randn(3))
    assert out.shape == x.shape and torch.all(out == 0), "the output gain starts at 0"
    gains = [p for n, p in net.named_parameters() if n.endswith(".gain")]
    assert gains and all(p.item() == 0 for p in gains)
    with torch.no_grad():  # the output gain and the embedding gains (which start the blocks unmodulated)
        for p in gains:
            p.fill_(1.0)
    lo, hi = net(x, torch.full((3,), -2.0)), net(x, torch.full((3,), 2.0))
    assert (hi - lo).abs().mean() > 0.01 * hi.abs().mean()
    hi.square().sum().backward()  # through odd sizes too
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_mp_nets_learn_to_use_noise_level_and_input(shape):
    """From the zero start, training moves the gains so that F depends on c_noise and x, and forced
    weight normalisation holds every stored weight on its sphere."""
    torch.manual_seed(0)
    net = build_backbone(mp_cfg(), shape)
    assert math.isfinite(train_steps(net, shape, steps=40, lr=3e-2))
    net(torch.randn(2, *shape), torch.randn(2))  # a training forward re-normalises after the last step
    for m in net.modules():
        if isinstance(m, MPConv):
            norms = m.weight.detach().flatten(1).norm(dim=1)
            torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(m.weight[0].numel())), rtol=1e-3,
                                       atol=0)
    assert_uses_x_and_noise(net, shape)


# --------------------------------------------------------------------------------------------------
# Configuration


def test_defaults_are_unchanged():
    cfg = NetConfig()
    assert (cfg.unet.norm, cfg.unet.mp, cfg.mlp.norm, cfg.mlp.mp) == ("group", False, "layer", False)


def test_stability_options_round_trip_through_config(tmp_path):
    cfg = apply_overrides(RunConfig(), ["net.unet.mp=true", "net.mlp.mp=on", "net.mlp.norm=none",
                                        "net.unet.groups=5"])  # groups are unused with mp: no GroupNorm check
    assert cfg.net.unet.mp is True and cfg.net.mlp.mp is True and cfg.net.mlp.norm == "none"
    validate(cfg)
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    assert load_toml(path) == cfg
    net = build_backbone(load_toml(path).net, (1, 8, 8))
    assert any(isinstance(m, MPConv) for m in net.modules())
    assert not any(isinstance(m, NORM_TYPES) for m in net.modules())

    cfg = apply_overrides(RunConfig(), ["net.unet.norm=batch"])
    assert validate(cfg).net.unet.norm == "batch"


@pytest.mark.parametrize("items,match", [
    (["net.unet.norm=batchnorm"], "Did you mean 'batch'"),
    (["net.mlp.norm=group"], "'layer', 'none'"),
    (["net.unet.mp=maybe"], "true or false"),
    (["net.unet.mp=true", "net.unet.norm=batch"], "net.unet.mp=true"),
    (["net.unet.mp=true", "net.unet.norm=layer"], "no normalisation layers"),
])
def test_bad_stability_options_fail_at_once(items, match):
    with pytest.raises(ConfigError, match=match):
        validate(apply_overrides(RunConfig(), items))
