"""Contract tests for the denoiser backbones F(x, c_noise, cond=None) in steadydiff.nets."""

from __future__ import annotations

import pytest
import torch

from steadydiff.errors import ConfigError
from steadydiff.nets import NetConfig, build_backbone, count_parameters
from steadydiff.nets.config import MLPConfig, UNetConfig
from steadydiff.nets.layers import Dropout, make_norm

# Small U-Nets keep the suite fast; the defaults are checked separately where they matter.
SMALL_UNET = dict(channels=16, channel_mult=(1, 2), groups=4, head_channels=8)


def small_cfg(kind: str = "auto", **unet) -> NetConfig:
    return NetConfig(kind=kind, mlp=MLPConfig(width=32, blocks=2, emb_dim=16),
                     unet=UNetConfig(**{**SMALL_UNET, **unet}))


def perturb_output_layers(net: torch.nn.Module) -> None:
    """Give every zero-initialised layer small random weights, so outputs depend on the inputs."""
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.05)


@pytest.mark.parametrize("shape", [(2,), (13,), (1, 8, 8), (3, 28, 28), (1, 7, 7), (3, 5, 5)])
def test_output_shape_and_zero_at_init(shape):
    torch.manual_seed(0)
    net = build_backbone(small_cfg(), shape)
    x = torch.randn(3, *shape)
    out = net(x, torch.randn(3))
    assert out.shape == x.shape
    assert torch.all(out == 0), "F must be exactly 0 at initialisation (zero-initialised output layer)"
    perturb_output_layers(net)
    out = net(x, torch.randn(3))
    out.square().sum().backward()  # a backward pass through odd sizes must work too
    assert out.shape == x.shape and out.abs().sum() > 0


def test_c_noise_forms():
    net = build_backbone(small_cfg(), (2,))
    perturb_output_layers(net)
    x = torch.randn(4, 2)
    a = net(x, torch.full((4,), 0.5))
    assert torch.equal(a, net(x, torch.tensor(0.5)))
    assert torch.equal(a, net(x, torch.full((4, 1), 0.5)))
    with pytest.raises(ValueError, match="c_noise"):
        net(x, torch.zeros(3))


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_learns_to_use_noise_level_and_input(shape):
    """After a few steps from the zero start, F depends on c_noise and on x (not only on one)."""
    torch.manual_seed(0)
    net = build_backbone(small_cfg(), shape)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        x, c = torch.randn(32, *shape), torch.randn(32)
        target = x + torch.tanh(c).view(-1, *[1] * len(shape))  # depends on both x and c_noise
        loss = (net(x, c) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert_uses_x_and_noise(net, shape)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_norms(norm):
    torch.manual_seed(0)
    net = build_backbone(small_cfg(norm=norm), (1, 8, 8))
    kinds = {type(m).__name__ for m in net.modules()}
    assert "GroupNorm" in kinds
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == ({1} if norm == "layer" else {4})
    perturb_output_layers(net)
    out = net(torch.randn(2, 1, 8, 8), torch.randn(2))
    assert torch.isfinite(out).all()


def test_make_norm_rejects_bad_values():
    with pytest.raises(ConfigError, match="groups"):
        make_norm("group", 12, 8)
    with pytest.raises(ConfigError, match="unknown norm"):
        make_norm("batch", 8, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_dropout_only_in_train_mode(shape):
    torch.manual_seed(0)
    cfg = small_cfg(dropout=0.5)
    cfg.mlp.dropout = 0.5
    net = build_backbone(cfg, shape)
    perturb_output_layers(net)
    x, c = torch.randn(4, *shape), torch.randn(4)
    net.train()
    assert not torch.equal(net(x, c), net(x, c))
    net.eval()
    assert torch.equal(net(x, c), net(x, c))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_dropout_rate_and_scaling(layout):
    torch.manual_seed(0)
    x = torch.ones(64, 16, 16, 16).contiguous(memory_format=layout).requires_grad_()
    y = Dropout(0.1).train()(x)
    assert abs((y == 0).float().mean().item() - 0.1) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.02  # inverted scaling keeps the mean
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient is the same mask and scale
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_attention_levels_configurable():
    def n_attn(net):
        return sum(type(m).__name__ == "SelfAttention" for m in net.modules())

    none = build_backbone(small_cfg(attn_levels=()), (1, 8, 8))
    low = build_backbone(small_cfg(attn_levels=(1,)), (1, 8, 8))
    both = build_backbone(small_cfg(attn_levels=(0, 1)), (1, 8, 8))
    # middle only; + 1 encoder and 2 decoder blocks at level 1; + the same at level 0
    assert (n_attn(none), n_attn(low), n_attn(both)) == (1, 4, 7)
    perturb_output_layers(both)
    assert both(torch.randn(2, 1, 8, 8), torch.randn(2)).shape == (2, 1, 8, 8)


def test_mismatched_kinds_raise_config_error_naming_the_shape():
    with pytest.raises(ConfigError, match=r"net.kind='unet2d'.*\(2,\).*net.kind=auto"):
        build_backbone(NetConfig(kind="unet2d"), (2,))
    with pytest.raises(ConfigError, match=r"net.kind='mlp'.*\(1, 8, 8\)"):
        build_backbone(NetConfig(kind="mlp"), (1, 8, 8))
    with pytest.raises(ConfigError, match=r"net.kind='unet1d'.*\(2,\)"):
        build_backbone(NetConfig(kind="unet1d"), (2,))
    with pytest.raises(ConfigError, match=r"\(1, 2, 4, 4\)"):
        build_backbone(NetConfig(), (1, 2, 4, 4))


def test_an_unconditional_network_refuses_a_condition_and_a_conditional_one_reads_it():
    net = build_backbone(small_cfg(), (2,))
    with pytest.raises(ConfigError, match="built without a condition"):
        net(torch.randn(2, 2), torch.randn(2), cond=torch.zeros(2, dtype=torch.long))
    for cond_kw, cond in [({"cond_classes": 3}, torch.tensor([0, 2])), ({"cond_dim": 2}, torch.randn(2, 2))]:
        net = build_backbone(small_cfg(), (2,), **cond_kw)
        for p in net.parameters():
            p.data.normal_(0, 0.2)  # the output layer starts at zero
        x, c = torch.randn(2, 2), torch.randn(2)
        assert not torch.allclose(net(x, c, cond), net(x, c, None))
        with pytest.raises(ValueError):
            net(x, c, cond[:1])  # one condition for two items


def test_default_sizes():
    digits = build_backbone(NetConfig(), (1, 8, 8))
    assert type(digits).__name__ == "UNet2D"
    assert count_parameters(digits) <= 700_000
    toy = build_backbone(NetConfig(), (2,))
    assert type(toy).__name__ == "MLPBackbone"
    assert count_parameters(toy) < 1_000_000


def assert_uses_x_and_noise(net, shape) -> None:
    """A trained backbone's output changes with its input and with c_noise (on fixed random inputs)."""
    net.eval()
    x = torch.randn(8, *shape)
    with torch.no_grad():
        lo, hi = net(x, torch.full((8,), -2.0)), net(x, torch.full((8,), 2.0))
        other_x = net(torch.randn(8, *shape), torch.full((8,), 2.0))
    assert (hi - lo).abs().mean() > 0.05 * hi.abs().mean(), "output ignores c_noise"
    assert (hi - other_x).abs().mean() > 0.05 * hi.abs().mean(), "output ignores x"


def test_augmentation_labels_condition_the_unet_and_zero_means_none():
    """Zero labels (sampling) give exactly the output of no labels; once the label weights have learnt,
    other labels change the output; a network built without them refuses labels."""
    from steadydiff.data.augment import AUG_DIM

    torch.manual_seed(0)
    cfg = UNetConfig(channels=16, channel_mult=(1, 2), groups=4, dropout=0.0)
    net = build_backbone(NetConfig(unet=cfg), (1, 8, 8), aug_dim=AUG_DIM)
    x, c = torch.randn(4, 1, 8, 8), torch.full((4,), 0.3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    labels = torch.zeros(4, AUG_DIM)
    labels[:, 0] = 1.0  # "flipped"
    for _ in range(60):  # learn: the flipped label means output +1
        opt.zero_grad()
        ((net(x, c, aug=labels) - 1).square().mean() + net(x, c, aug=torch.zeros_like(labels)).square().mean()
         ).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        plain, zero, flipped = net(x, c), net(x, c, aug=torch.zeros(4, AUG_DIM)), net(x, c, aug=labels)
    assert torch.equal(plain, zero)
    assert (flipped - plain).mean().item() > 0.5
    bare = build_backbone(NetConfig(unet=cfg), (1, 8, 8))
    with pytest.raises(ConfigError, match="without augmentation labels"):
        bare(x, c, aug=labels)


def test_activation_checkpointing_gives_the_same_gradients():
    """net.unet.checkpointing recomputes each block's activations in the backward pass: the same loss and
    gradients as without (dropout on, so the recomputation must replay the same masks)."""
    import copy

    from steadydiff.nets import NetConfig, UNetConfig, build_backbone

    cfg = NetConfig(unet=UNetConfig(channels=16, channel_mult=(1, 2), dropout=0.2, attn_levels=(1,)))
    torch.manual_seed(0)
    plain = build_backbone(cfg, (1, 8, 8))
    with torch.no_grad():  # past initialisation (zero-initialised output layers would stop every gradient)
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    checked = copy.deepcopy(plain)
    checked.checkpointing = True
    x, c = torch.randn(6, 1, 8, 8), torch.randn(6)
    grads = []
    for net in (plain, checked):
        net.train()
        torch.manual_seed(1)
        net(x, c).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert checked.checkpointing and not plain.checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    assert float(grads[0].abs().sum()) > 0
