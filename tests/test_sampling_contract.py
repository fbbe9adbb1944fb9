"""Contract suite: every solver × every step list keeps the promises of the sampler signature."""

from __future__ import annotations

import pytest
import torch

from steadydiff.diffusion.analytic import GaussianMixtureDenoiser
from steadydiff.sampling import (
    SOLVERS,
    STEP_LISTS,
    SeededNoise,
    get_solver,
    karras_sigmas,
    nfe,
    sample,
    step_list,
    vp_uniform_sigmas,
)

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
STEPS = 6
SHAPE = (12, 2, 3)  # samples are (2, 3) arrays: solvers must not assume flat vectors
STOCHASTIC = {"ancestral"}  # ddim is stochastic only with eta > 0, tested separately

solver_names = pytest.mark.parametrize("solver_name", list(SOLVERS))
list_names = pytest.mark.parametrize("list_name", list(STEP_LISTS))


@pytest.fixture(scope="module")
def denoiser() -> GaussianMixtureDenoiser:
    g = torch.Generator().manual_seed(1)
    return GaussianMixtureDenoiser(torch.randn(4, 6, generator=g), std=0.3)


def sigmas_for(list_name: str, n: int = STEPS) -> torch.Tensor:
    return step_list(list_name, n, SIGMA_MIN, SIGMA_MAX)


class Counting:
    """Wraps a denoiser and records every call."""

    def __init__(self, inner):
        self.inner, self.calls, self.sigmas = inner, 0, []

    def __call__(self, x, sigma):
        self.calls += 1
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype and sigma.device == x.device
        self.sigmas.append(float(sigma[0]))
        return self.inner(x, sigma)


def no_noise(like):
    raise AssertionError("a deterministic solver asked for noise")


# ---- step lists ------------------------------------------------------------------------------


@list_names
@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_step_list_properties(list_name, n):
    s = sigmas_for(list_name, n)
    assert s.dtype == torch.float32 and s.dim() == 1 and s.shape[0] == n + 1
    assert bool((s[1:] < s[:-1]).all()), "strictly decreasing"
    assert s[-1].item() == 0.0
    assert s[0].item() == pytest.approx(SIGMA_MAX, rel=1e-6)
    assert bool((s[:-1] >= torch.tensor(SIGMA_MIN, dtype=torch.float32)).all())
    if n > 1:
        assert s[-2].item() == pytest.approx(SIGMA_MIN, rel=1e-5)


def test_karras_matches_eq5_and_rho():
    s = karras_sigmas(4, 0.01, 10.0, rho=3.0).double()
    ramp = torch.arange(4, dtype=torch.float64) / 3
    want = (10.0 ** (1 / 3) + ramp * (0.01 ** (1 / 3) - 10.0 ** (1 / 3))) ** 3
    torch.testing.assert_close(s[:-1], want, rtol=1e-6, atol=0)
    assert not torch.equal(karras_sigmas(4, 0.01, 10.0, rho=7.0), s.float())


def test_vp_uniform_ignores_rho_and_knows_cosine():
    a = STEP_LISTS["vp-uniform"](8, SIGMA_MIN, SIGMA_MAX, rho=3.0)
    torch.testing.assert_close(a, vp_uniform_sigmas(8, SIGMA_MIN, SIGMA_MAX), rtol=0, atol=0)
    c = vp_uniform_sigmas(8, SIGMA_MIN, SIGMA_MAX, schedule="cosine")
    assert c.shape == (9,) and bool((c[1:] < c[:-1]).all()) and not torch.equal(a, c)


def test_step_list_rejects_bad_input():
    with pytest.raises(ValueError, match="karras.*vp-uniform"):
        step_list("karas", 10, SIGMA_MIN, SIGMA_MAX)
    for bad in [(0, SIGMA_MIN, SIGMA_MAX), (5, 0.0, SIGMA_MAX), (5, 1.0, 0.5)]:
        with pytest.raises(ValueError):
            karras_sigmas(*bad)


# ---- solvers: shapes, determinism, batch independence ---------------------------------------


@solver_names
@list_names
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_kept(denoiser, solver_name, list_name, dtype):
    out = sample(denoiser, SHAPE, sigmas_for(list_name), solver_name, range(SHAPE[0]), dtype=dtype)
    assert out.shape == SHAPE and out.dtype == dtype and bool(out.isfinite().all())


@solver_names
@list_names
def test_same_seeds_same_samples(denoiser, solver_name, list_name):
    sig = sigmas_for(list_name)
    a = sample(denoiser, SHAPE, sig, solver_name, range(100, 112))
    b = sample(denoiser, SHAPE, sig, solver_name, range(100, 112))
    assert torch.equal(a, b)


@solver_names
@list_names
def test_batch_size_and_position_independence(denoiser, solver_name, list_name):
    sig = sigmas_for(list_name)
    seeds = list(range(7, 19))
    whole = sample(denoiser, SHAPE, sig, solver_name, seeds)
    chunks = [seeds[i : i + 5] for i in range(0, len(seeds), 5)]  # 5, 5, 2
    parts = torch.cat([sample(denoiser, (len(c), *SHAPE[1:]), sig, solver_name, c) for c in chunks])
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    perm = torch.randperm(len(seeds), generator=torch.Generator().manual_seed(3))
    shuffled = sample(denoiser, SHAPE, sig, solver_name, [seeds[i] for i in perm])
    torch.testing.assert_close(shuffled, whole[perm], rtol=1e-5, atol=1e-5)


@solver_names
@list_names
def test_stochastic_only_where_promised(denoiser, solver_name, list_name):
    sig = sigmas_for(list_name)
    x = sig[0] * torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    solver = get_solver(solver_name)
    if solver_name in STOCHASTIC:
        a = solver(denoiser, x, sig, noise=SeededNoise(range(12)))
        b = solver(denoiser, x, sig, noise=SeededNoise(range(12, 24)))
        assert (a - b).abs().amax(dim=(1, 2)).min() > 1e-3, "every sample must depend on its noise"
    else:
        a = solver(denoiser, x, sig, noise=no_noise)  # never drawn
        b = solver(denoiser, x, sig)
        assert torch.equal(a, b)


@list_names
def test_ddim_eta_spans_euler_and_ancestral(denoiser, list_name):
    sig = sigmas_for(list_name)
    x = sig[0] * torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    euler, ddim, ancestral = SOLVERS["euler"], SOLVERS["ddim"], SOLVERS["ancestral"]
    assert torch.equal(ddim(denoiser, x, sig, noise=no_noise), euler(denoiser, x, sig))
    a = ddim(denoiser, x, sig, noise=SeededNoise(range(12)), eta=1.0)
    b = ancestral(denoiser, x, sig, noise=SeededNoise(range(12)))
    assert torch.equal(a, b)
    c = ddim(denoiser, x, sig, noise=SeededNoise(range(12, 24)), eta=1.0)
    assert (a - c).abs().amax(dim=(1, 2)).min() > 1e-3
    # eta reaches the solver through sample(**solver_kwargs)
    s0 = sample(denoiser, SHAPE, sig, "ddim", range(12))
    s1 = sample(denoiser, SHAPE, sig, "ddim", range(12), eta=1.0)
    assert not torch.allclose(s0, s1)


# ---- names, callbacks, evaluation counts ----------------------------------------------------


def test_unknown_names_raise_with_choices():
    with pytest.raises(ValueError, match="did you mean 'heun'") as err:
        get_solver("huen")
    for name in SOLVERS:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="dpmpp-2m"):
        nfe("nope", 10)
    with pytest.raises(ValueError, match="euler"):
        sample(lambda x, s: x, (2, 2), karras_sigmas(3, 0.1, 1.0), "eulr", [0, 1])
    assert set(SOLVERS) == {"euler", "heun", "ddim", "ancestral", "dpmpp-2m"}


@solver_names
@list_names
def test_callback_once_per_step(denoiser, solver_name, list_name):
    sig = sigmas_for(list_name)
    seen = []
    out = sample(denoiser, SHAPE, sig, solver_name, range(12), callback=seen.append)
    assert [info["i"] for info in seen] == list(range(STEPS))
    for info in seen:
        assert set(info) == {"i", "x", "sigma", "sigma_next", "denoised"}
        assert float(info["sigma"]) == sig[info["i"]].item()
        assert float(info["sigma_next"]) == sig[info["i"] + 1].item()
        assert info["x"].shape == SHAPE and info["denoised"].shape == SHAPE
    assert torch.equal(seen[-1]["x"], out)


@solver_names
@list_names
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_nfe_counts_denoiser_calls(denoiser, solver_name, list_name, steps):
    counted = Counting(denoiser)
    sample(counted, SHAPE, sigmas_for(list_name, steps), solver_name, range(12))
    assert counted.calls == nfe(solver_name, steps)
    assert 0.0 not in counted.sigmas, "the denoiser is never asked about σ = 0"


# ---- seeded noise ---------------------------------------------------------------------------


def test_seeded_noise_rows_follow_their_seeds():
    like = torch.empty(3, 4, 5, dtype=torch.float64)
    noise = SeededNoise([5, 6, 7])
    first, second = noise(like), noise(like)
    assert first.shape == like.shape and first.dtype == torch.float64
    assert not torch.equal(first, second), "successive calls advance the generators"
    alone = SeededNoise([6])
    torch.testing.assert_close(alone(like[:1]), first[1:2], rtol=0, atol=0)
    torch.testing.assert_close(alone(like[:1]), second[1:2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="3 seeds"):
        noise(torch.empty(2, 4))
