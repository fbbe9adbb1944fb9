"""Training and sampling throughput on digits-shaped data: steadydiff's U-Net beside diffusers' UNet2DModel.

Training step = forward + backward + gradient clipping (norm 1) + optimiser step, fp32, batch 128 of 1×8×8
images, 2 threads. steadydiff trains exactly as its loop does: the U-Net from `build_backbone`, wrapped in
the EDM preconditioning `Denoiser` (Karras et al. 2022, Eq. 7) and trained with `DenoisingLoss` (log-normal
σ, EDM weighting, Eq. 8) on batches with the default non-leaking augmentation (`data.augment`), AdamW as built
by the loop. diffusers trains the way its unconditional example
does: UNet2DModel predicting ε at t ~ U{0..999} of a linear-β DDPM schedule, loss = MSE(ε̂, ε) (Ho et al.
2020, L_simple, Eq. 14), AdamW. Both see the same batches. The models take turns in rounds (round-robin),
so a slowdown of the shared CPU hits neighbouring measurements alike. We report each model's best round
(the least disturbed, as `timeit` advises) and its median round, and compare models by the median over
rounds of the paired ratio (same round), which cancels slow drifts in the machine's load.

Sampling throughput: 1,000 samples with Heun's 2nd-order method on 18 Karras steps (35 network
evaluations; Karras et al. 2022, Algorithm 1), through the same `generate` path as `Model.sample`.

    .venv/bin/python benchmarks/throughput.py [--quick]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from _common import parse_args, table, write_section
from steadydiff.config import RunConfig
from steadydiff.data.augment import AUG_DIM, augment
from steadydiff.data.config import DEFAULT_AUGMENT
from steadydiff.diffusion import Denoiser, DenoisingLoss
from steadydiff.nets import NetConfig, UNetConfig, build_backbone, count_parameters
from steadydiff.sampling import generate, nfe
from steadydiff.train.config import TrainConfig
from steadydiff.train.optim import build_optimizer

BATCH, SHAPE = 128, (1, 8, 8)
SIGMA_DATA = 0.5  # any positive value: it scales the preconditioning, not the work

# diffusers' ~701k-parameter recipe for 8×8 digits (the "701k" of the reference point) and a 2.79M one of
# the same layout at twice the width (timed only when a steadydiff net of that size is); each steadydiff net is
# compared with the diffusers net nearest in parameters.
DIFFUSERS_CONFIGS = {
    "diffusers UNet2DModel 32-64": dict(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
    "diffusers UNet2DModel 64-128": dict(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
}


@dataclass
class Contender:
    name: str
    params: int
    step: Callable[[torch.Tensor, torch.Generator], None]
    rates: list[float]


def steadydiff_contender(name: str, net_cfg: NetConfig) -> tuple[Contender, Denoiser]:
    den = Denoiser(build_backbone(net_cfg, SHAPE, aug_dim=AUG_DIM), SIGMA_DATA)
    loss_fn, opt = DenoisingLoss(), build_optimizer(den.parameters(), TrainConfig())
    den.train()

    def step(x: torch.Tensor, g: torch.Generator) -> None:
        x, labels = augment(x, DEFAULT_AUGMENT, g)  # the loop's default non-leaking augmentation of images
        per_sample, _ = loss_fn(den, x, generator=g, aug=labels)
        opt.zero_grad(set_to_none=True)
        per_sample.mean().backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()

    return Contender(name, count_parameters(den.backbone), step, []), den


def diffusers_contender(name: str, config: dict) -> Contender:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(**config).train()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    # The diffusers unconditional-training example's AdamW settings.
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)

    def step(x: torch.Tensor, g: torch.Generator) -> None:
        noise = torch.randn(x.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (x.shape[0],), generator=g)
        pred = unet(sched.add_noise(x, noise, t), t).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()

    return Contender(name, sum(p.numel() for p in unet.parameters()), step, [])


def paired(a: Contender, b: Contender) -> float:
    """Median over rounds of a's rate / b's rate in the same round."""
    return statistics.median(x / y for x, y in zip(a.rates, b.rates, strict=True))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(2)
    warmup, rounds, steps_per_round, n_sample = (2, 2, 3, 100) if args.quick else (10, 12, 8, 1000)

    contenders: list[Contender] = []
    default, default_den = steadydiff_contender("steadydiff U-Net (default)", NetConfig())
    contenders.append(default)
    if NetConfig().unet.channels != 32:  # a ~0.7M-parameter variant, to compare at diffusers' 701k as well
        contenders.append(steadydiff_contender("steadydiff U-Net channels=32",
                                               NetConfig(unet=UNetConfig(channels=32)))[0])
    try:
        import diffusers
    except ImportError:
        diffusers = None
        print("diffusers is not installed (`.venv/bin/pip install -e '.[bench]'`): timing steadydiff alone")
    if diffusers is not None:
        biggest = max(c.params for c in contenders)
        for name, cfg in DIFFUSERS_CONFIGS.items():
            if name.endswith("64-128") and biggest < 1_500_000:
                continue  # no steadydiff net of that size in this run to compare it with
            contenders.append(diffusers_contender(name, cfg))
            print(f"{name}: {contenders[-1].params:,} parameters, UNet2DModel({cfg})")

    # The same batches for everyone: a fixed pool of random digits-shaped images in [-1, 1].
    pool = [torch.rand((BATCH, *SHAPE), generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(8)]
    for c in contenders:  # warm-up: allocator, oneDNN kernel selection
        g = torch.Generator().manual_seed(0)
        for i in range(warmup):
            c.step(pool[i % len(pool)], g)
    for r in range(rounds):
        for c in contenders:
            g = torch.Generator().manual_seed(1000 + r)
            t0 = time.perf_counter()
            for i in range(steps_per_round):
                c.step(pool[i % len(pool)], g)
            c.rates.append(steps_per_round * BATCH / (time.perf_counter() - t0))

    rows = []
    for c in contenders:
        med = statistics.median(c.rates)
        rows.append([c.name, f"{c.params:,}", f"{max(c.rates):,.0f}", f"{med:,.0f}", f"{min(c.rates):,.0f}",
                     f"{paired(c, default):.2f}×"])
    train_table = table(["model", "parameters", "train samples/s best round", "median round", "worst round",
                         "vs steadydiff default (paired)"], rows)

    # Sampling throughput, with the network as `steadydiff.load` leaves it (eval, no gradients).
    default_den.eval().requires_grad_(False)
    cfg = RunConfig()
    kw = cfg.sampling(default_den.sigma_data)
    generate(default_den, SHAPE, 20, seed=0, steps=3, sampler="heun", **kw)  # warm-up
    t0 = time.perf_counter()
    generate(default_den, SHAPE, n_sample, seed=0, steps=18, sampler="heun", **kw)
    dt = time.perf_counter() - t0
    sample_line = (f"Sampling (steadydiff default U-Net, {default.params:,} parameters): {n_sample:,} samples, heun 18 "
                   f"steps = {nfe('heun', 18)} NFE, batch 500: {dt:.1f} s = {n_sample / dt:,.1f} samples/s "
                   f"({n_sample * nfe('heun', 18) / dt:,.0f} network evaluations per second per image).")

    lines = [f"Training: batch {BATCH} of 1×8×8 random images, fp32, torch.set_num_threads(2), {warmup} warm-up "
             f"steps each, then {rounds} round-robin rounds of {steps_per_round} steps per model.", "", train_table, ""]
    goal = "Goal: ≥ 1.5× diffusers' training samples/s at similar parameter count."
    ours = [c for c in contenders if c.name.startswith("steadydiff")]
    theirs = [c for c in contenders if c.name.startswith("diffusers")]
    if theirs:
        lines += [goal]
        for c in ours:  # pair each steadydiff net with the diffusers net nearest in parameter count
            d = min(theirs, key=lambda t: abs(t.params - c.params))
            ratio, best = paired(c, d), max(c.rates) / max(d.rates)
            lines.append(f"- {c.name} ({c.params / 1e6:.2f}M) vs {d.name} ({d.params / 1e6:.2f}M): {ratio:.2f}× "
                         f"paired median, {best:.2f}× best rounds ({'met' if ratio >= 1.5 else 'NOT met'})")
        lines += ["", "diffusers configurations:"]
        lines += [f"- {c.name}: `UNet2DModel({DIFFUSERS_CONFIGS[c.name]})`, {c.params:,} parameters" for c in theirs]
        lines.append(f"- diffusers {diffusers.__version__}")
    else:
        lines += [goal, "- diffusers not installed: no comparison."]
    lines += ["", sample_line]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("throughput", "Throughput: training and sampling (digits-shaped, CPU)", body)


if __name__ == "__main__":
    main()
