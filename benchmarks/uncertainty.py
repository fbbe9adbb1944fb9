"""uncertainty — diversity options measured against the defaults (issue "Diversity and uncertainty").

`--part mmd`: `toy:grid25-imbalanced` (25 modes, weights falling geometrically from 1 to 1/50), trained with the
defaults and with the MMD diversity term (`train.mmd_weight`), seeds 0–2, 3,000 steps × 256; 5,000 samples
(heun, 35 NFE) per run: modes covered, share within 3 std of a mode, the five rarest modes' recall (how many of
them get a sample within 3 std) and their sampled share against their true weight; the term's cost per step
(median samples/s of the run's log windows). Results accumulate in benchmarks/results/uncertainty.json.

`--part mcdropout`: `toy:grid25` trained with MLP dropout 0.1 (3,000 × 256, seeds 0–1); 5,000 samples with plain
sampling and with MC dropout (4 passes per step): modes covered, share within 3 std, the mean spread of the
estimate, and sampling time; and the calibration of imputing one coordinate of held-out points (the 90 % band's
coverage) from plain draws and with dropout left on (one pass per step).

`--part ensemble`: `toy:grid25` (3,000 × 256, defaults otherwise): an ensemble of 4 (`train.ensemble=2`, then
`train.ensemble=4`, which adds members 2 and 3 to the same directory), its first member alone (the single model: the
run of train.seed) and its first two members (the ensemble of 2, at equal steps per member), and an ensemble of 2 at
1,500 steps each (equal total compute to the single model); 5,000 samples (heun, 35 NFE) each with mixture and mean
sampling: modes covered, share within 3 std, share TV distance, sampling time; training time per member.
Calibration: 400 held-out points with one coordinate hidden (alternately x and y), 50 draws each by `impute` (its
defaults: RePaint resampling 5): the share of true values inside the central 90 % band of the draws (their 5 % and
95 % quantiles) for the single model's draws and the ensembles' mixture draws, beside the same band from 50 draws of
the exact conditional distribution (what a perfect model scores with 50 draws).

`--part speed`: training throughput of ensembles batched (`train.ensemble_batched=true`: members in lockstep, their
network passes vmapped) against one member after another (`off`: K separate runs, bit for bit), for K = 2 and 4 on
`toy:grid25` (MLP, batch 256, 600 steps) and `digits` (U-Net, batch 128, 150 steps), defaults otherwise, one thread;
the loop's member-samples/s (from each member's metrics.jsonl: first to last log line, members' spans added when
they train one after another), the whole `train` call's wall time, peak resident memory is not separated (one
process), and the largest relative difference of a member's final weights between the two ways.

`--part digits`: ensembles on `digits` (297 held-out digits; `--digits-steps` (3,000 by default) × 128 per member,
unconditional and mask-conditioned, `train.masks=all`, so one network both samples and imputes): an ensemble of 4
(its first member the single model, its first two the ensemble of 2 at equal steps) and an ensemble of 2 at half the
steps each (equal total compute to the single model). Fréchet distance of 1,000 samples (heun 35 NFE, seed 0) in
the benchmark's digit classifier's feature space against the held-out digits, with mixture and mean sampling, beside
the floor (1,000 training digits against the same held-out digits). Calibration: the right half of every held-out digit
unknown, 20 completions each by `impute` (mixture draws for an ensemble): the share of true pixel values inside
the central 90 % band of the draws (their 5 % and 95 % quantiles), over all unknown pixels and over the inked ones.

`--part digits-mcdropout`: the calibration of `--part digits` for MC dropout: one member of the same protocol
trained with U-Net dropout 0.1 (`--digits-steps` × 128, seed 0), 20 completions of each held-out right half drawn
plainly and with dropout left on (`impute(mc_dropout=1)`: one dropout pass per solver step).

`--part nll-anchor`: our probability-flow likelihood (metrics/likelihood.py: Heun, 128 steps) beside k-diffusion's
`log_likelihood` (adaptive dopri5 through torchdiffeq, atol = rtol = 1e-4, one Rademacher probe per call; the
issue's reference) on the same denoisers and points: Gaussian mixtures with their exact denoisers (2-D: 4 modes;
16-D: 8 modes; 64-D: 8 modes), where the closed-form log-density is the truth, and the trained grid25 network of the
MC-dropout part (`mcdrop-s0`, dropout off), where the two integrators are compared with each other. k-diffusion,
torchdiffeq, torchsde and trampoline come from benchmarks/out/kd-site (`.venv/bin/pip install --no-deps --target
benchmarks/out/kd-site k-diffusion==0.1.1.post1 torchdiffeq torchsde trampoline`); k-diffusion's utils module imports
torchvision, which cannot be installed beside torch 2.13 here, for image helpers `log_likelihood` never calls, so
the benchmark loads `k_diffusion.sampling` with empty stand-ins for those torchvision modules (nothing of
torchvision runs). Its prior is N(0, σ_max²), ours N(0, σ_max² + σ_data²): at σ_max = 80 the two differ by
~d·σ_data²/(2·80²) nats per item (≤ 0.003 here).

`--part nll`: the default `digits` run (3,000 × 128, a checkpoint every 500 steps) and at each checkpoint the
likelihood (`steadydiff eval --nll`: EMA weights, 200 training and 200 held-out digits, 64 Heun steps, Hutchinson
with 4 probes) in bits/dim: where memorisation starts, and the runtime per 1,000 items.

    .venv/bin/python benchmarks/uncertainty.py [--part mmd mcdropout ensemble speed digits nll-anchor nll]
        [--weights 0 1]
        [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np

from _common import OUT, load_results, parse_args, save_result, table, write_section
from steadydiff import Ensemble, load, train
from steadydiff.data.sources import GRID25_CENTRES, GRID25_STD, grid25_imbalanced_weights

RESULTS = Path(__file__).resolve().parent / "results" / "uncertainty.json"
ROOT_OUT = OUT / "uncertainty"
N_SAMPLES = 5000
RARE = 5
N_CALIBRATION, DRAWS = 300, 100  # held-out points imputed, draws per point
# Where the kept figures came from (the runs that wrote benchmarks/results/uncertainty.json).
PROVENANCE = ("The MMD, MC dropout and likelihood tables come from `.venv/bin/python benchmarks/uncertainty.py` "
              "(weights 0 and 1; 2026-12-02 12:32–12:44 UTC), `... --weights 10` (with the MC dropout part; "
              "12:45–12:56 UTC) and `... --part nll` (13:10–13:34 UTC), each on one core beside another benchmark.")


def mode_shares(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's nearest centre and whether it lies within 3 std of it."""
    d = np.sqrt(((samples[:, None, :] - GRID25_CENTRES[None]) ** 2).sum(-1))
    nearest = d.argmin(1)
    return nearest, d[np.arange(len(samples)), nearest] <= 3 * GRID25_STD


def run_mmd(weight: float, seed: int, steps: int) -> dict:
    out = ROOT_OUT / f"mmd-{weight:g}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"data": {"source": "toy:grid25-imbalanced"},
           "train": {"steps": steps, "batch_size": 256, "seed": seed, "mmd_weight": weight,
                     "sample_metrics_every": 0, "sample_every": 0}}
    run = train(cfg, out=out, progress=False)
    samples = load(out).sample(N_SAMPLES, seed=0)
    nearest, good = mode_shares(samples)
    w = grid25_imbalanced_weights()
    rare = np.argsort(w)[:RARE]
    counts = np.bincount(nearest[good], minlength=25)
    rates = [r["samples_per_s"] for r in
             (json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip())][1:]
    return {"weight": weight, "seed": seed, "steps": steps,
            "modes_covered": int((counts > 0).sum()), "high_quality": float(good.mean()),
            "rare_covered": int((counts[rare] > 0).sum()),
            "rare_share_ratio": [float(counts[k] / N_SAMPLES / w[k]) for k in rare],
            "share_tv": float(0.5 * np.abs(counts / max(counts.sum(), 1) - w).sum()),
            "samples_per_s": statistics.median(rates), "wall_s": run.summary["wall_s"]}


def run_mcdropout(seed: int, steps: int, quick: bool = False) -> dict:
    import time

    out = ROOT_OUT / f"mcdrop-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"data": {"source": "toy:grid25"}, "net": {"mlp": {"dropout": 0.1}},
           "train": {"steps": steps, "batch_size": 256, "seed": seed, "sample_metrics_every": 0, "sample_every": 0}}
    train(cfg, out=out, progress=False)
    model = load(out)
    rows = {}
    for passes in (0, 4):
        t0 = time.perf_counter()
        got = model.sample(N_SAMPLES, seed=0, mc_dropout=passes, uncertainty=passes > 1)
        seconds = time.perf_counter() - t0
        samples, spread = got if passes > 1 else (got, None)
        nearest, good = mode_shares(samples)
        counts = np.bincount(nearest[good], minlength=25)
        rows[str(passes)] = {"modes_covered": int((counts > 0).sum()), "high_quality": float(good.mean()),
                             "share_tv": float(0.5 * np.abs(counts / max(counts.sum(), 1) - 1 / 25).sum()),
                             "spread": None if spread is None else float(spread.mean()), "seconds": round(seconds, 1)}
    # One pass per step: each draw through its own dropped networks (more passes average them towards the plain
    # network and cost as many times the imputation's ~5 min here)
    cal = calibration([("dropout run, plain multi-draw", model, {}),
                       ("MC dropout, 1 pass per step", model, {"mc_dropout": 1})], quick)
    return {"seed": seed, "steps": steps, "rows": rows, "calibration": cal}


def sampled(model, mode: str | None, n: int) -> dict:
    """`n` samples (seed 0) of a model or ensemble: mode metrics and the time they took."""
    import time

    t0 = time.perf_counter()
    samples = model.sample(n, seed=0, **({} if mode is None else {"ensemble": mode}))
    seconds = time.perf_counter() - t0
    nearest, good = mode_shares(samples)
    counts = np.bincount(nearest[good], minlength=25)
    return {"modes_covered": int((counts > 0).sum()), "high_quality": float(good.mean()),
            "share_tv": float(0.5 * np.abs(counts / max(counts.sum(), 1) - 1 / 25).sum()), "seconds": round(seconds, 1)}


def exact_conditional_draws(points: np.ndarray, hidden: np.ndarray, draws: int, rng: np.random.Generator
                            ) -> np.ndarray:
    """(draws, n) draws of each point's hidden coordinate from grid25's exact conditional given the other: the
    component posterior ∝ N(known; centre, std²) over the 25 equal-weight Gaussians, then N(centre, std²)."""
    known = points[np.arange(len(points)), 1 - hidden]
    c_known = GRID25_CENTRES[:, 1 - hidden].T  # (n, 25)
    logp = -0.5 * ((known[:, None] - c_known) / GRID25_STD) ** 2
    post = np.exp(logp - logp.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    out = np.empty((draws, len(points)))
    for i in range(len(points)):
        comp = rng.choice(25, size=draws, p=post[i])
        out[:, i] = GRID25_CENTRES[comp, hidden[i]] + GRID25_STD * rng.standard_normal(draws)
    return out


def band_coverage(draws: np.ndarray, truth: np.ndarray) -> dict:
    """The share of true values inside the central 90 % band of the draws (per point: the 5 % and 95 % quantiles of
    its draws) and the band's mean width; the same for the central 50 % band; and the share of draws within 3 std of
    a mode's coordinate (−4, −2, 0, 2 or 4: a completion on a mode rather than between two)."""
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    q25, q75 = np.quantile(draws, [0.25, 0.75], axis=0)
    levels = np.unique(GRID25_CENTRES)
    on_mode = np.abs(draws[..., None] - levels).min(-1) <= 3 * GRID25_STD
    return {"coverage": float(((truth >= lo) & (truth <= hi)).mean()), "width": float((hi - lo).mean()),
            "coverage50": float(((truth >= q25) & (truth <= q75)).mean()), "on_mode": float(on_mode.mean())}


def calibration(models: list[tuple], quick: bool) -> list[dict]:
    """Impute one coordinate of held-out grid25 points (x for even rows, y for odd) with each model's `impute`
    (mixture draws for an ensemble; (name, model) or (name, model, impute's keywords)), and the exact conditional's
    draws; 90 % band coverage of each."""
    import time

    from steadydiff.data import DataConfig, load_data

    n, draws = (40, 10) if quick else (N_CALIBRATION, DRAWS)
    points = load_data(DataConfig(source="toy:grid25")).holdout[:n].astype(np.float64)
    hidden = np.arange(n) % 2
    truth = points[np.arange(n), hidden]
    given = points.astype(np.float32).copy()
    given[np.arange(n), hidden] = np.nan
    rows = [{"model": "exact conditional (reference)",
             **band_coverage(exact_conditional_draws(points, hidden, draws, np.random.default_rng(0)), truth)}]
    for name, model, *kw in models:
        t0 = time.perf_counter()
        done = model.impute(given, draws=draws, seed=0, **(kw[0] if kw else {}))  # (draws, n, 2); mixture draws
        seconds = time.perf_counter() - t0
        rows.append({"model": name, **band_coverage(done[:, np.arange(n), hidden], truth),
                     "seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_ensemble(seed: int, steps: int, quick: bool) -> dict:
    import time

    from _common import today

    started = today()
    base = {"data": {"source": "toy:grid25"},
            "train": {"steps": steps, "batch_size": 256, "seed": seed, "sample_metrics_every": 0, "sample_every": 0}}
    out, half = ROOT_OUT / f"ensemble-s{seed}", ROOT_OUT / f"ensemble-half-s{seed}"
    for d in (out, half):
        shutil.rmtree(d, ignore_errors=True)
    walls = {}
    for k in (2, 4):  # 4 after 2: members 2 and 3 join the same directory
        t0, c0 = time.perf_counter(), time.process_time()
        train({**base, "train": {**base["train"], "ensemble": k}}, out=out, progress=False)
        walls[f"train_to_{k}"] = {"wall_s": round(time.perf_counter() - t0, 1),
                                  "cpu_s": round(time.process_time() - c0, 1)}
    t0, c0 = time.perf_counter(), time.process_time()
    train({**base, "train": {**base["train"], "steps": steps // 2, "ensemble": 2}}, out=half, progress=False)
    walls["train_half"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
    member_wall = [json.loads((out / "members" / str(k) / "summary.json").read_text())["wall_s"] for k in range(4)]
    half_wall = [json.loads((half / "members" / str(k) / "summary.json").read_text())["wall_s"] for k in range(2)]
    ens4 = load(out)
    single, ens2, ens_half = ens4.members[0], Ensemble.of(ens4.members[:2], seed=seed), load(half)
    n = 500 if quick else N_SAMPLES
    c0 = time.process_time()
    rows = {"single": {"": sampled(single, None, n)}}
    for k in (1, 2, 3):  # the other members alone: a mixture's quality is the mean of its members'
        rows[f"member {k}"] = {"": sampled(ens4.members[k], None, n)}
    for name, model in (("ensemble of 2", ens2), ("ensemble of 4", ens4), ("ensemble of 2, half steps", ens_half)):
        rows[name] = {mode: sampled(model, mode, n) for mode in ("mixture", "mean")}
        print(name, json.dumps(rows[name]), flush=True)
    spread = {}
    for name, model in (("ensemble of 2", ens2), ("ensemble of 4", ens4)):
        _, s = model.sample(1000, seed=0, uncertainty=True)  # mixture
        spread[name] = float(s.mean())
    walls["sampling_cpu_s"] = round(time.process_time() - c0, 1)
    c0 = time.process_time()
    cal = calibration([("single model, multi-draw", single), ("ensemble of 2, mixture", ens2),
                       ("ensemble of 4, mixture", ens4), ("ensemble of 2 at half steps, mixture", ens_half)], quick)
    walls["calibration_cpu_s"] = round(time.process_time() - c0, 1)
    return {"seed": seed, "steps": steps, "started": started, "finished": today(), "n_samples": n,
            "member_wall_s": member_wall, "half_member_wall_s": half_wall,
            "times": walls, "rows": rows, "spread": spread, "calibration": cal}


def ensemble_report(res: dict) -> str:
    runs = [v for k, v in sorted(res.items()) if k.startswith("ensemble/")]
    if not runs:
        return ""
    parts = []
    for r in runs:
        steps, half = r["steps"], r["steps"] // 2
        per = statistics.mean(r["member_wall_s"])
        lines = []
        labels = {"single": f"single model (member 0), {steps:,} steps",
                  **{f"member {k}": f"member {k} alone (seed {r['seed']} + {k})" for k in (1, 2, 3)},
                  "ensemble of 2": f"ensemble of 2 (members 0–1), {steps:,} steps each",
                  "ensemble of 4": f"ensemble of 4, {steps:,} steps each",
                  "ensemble of 2, half steps": f"ensemble of 2, {half:,} steps each (equal total compute)"}
        train_s = {"single": r["member_wall_s"][0], **{f"member {k}": r["member_wall_s"][k] for k in (1, 2, 3)},
                   "ensemble of 2": sum(r["member_wall_s"][:2]), "ensemble of 4": sum(r["member_wall_s"]),
                   "ensemble of 2, half steps": sum(r["half_member_wall_s"])}
        alone = [r["rows"][name][""]["high_quality"] for name in ("single", "member 1", "member 2", "member 3")
                 if name in r["rows"]]
        members_note = "" if len(alone) < 4 else (
            f" The members alone put {', '.join(f'{100 * v:.1f}' for v in alone)} % of their samples within 3 std "
            f"(mean {100 * statistics.mean(alone[:2]):.1f} % over members 0–1, {100 * statistics.mean(alone):.1f} % "
            "over 0–3): a mixture's share is its members' mean, so a weaker member pulls it down.")
        for name, modes in r["rows"].items():
            for mode, v in modes.items():
                lines.append([labels[name], mode or "—", f"{v['modes_covered']}/25", f"{100 * v['high_quality']:.1f} %",
                              f"{v['share_tv']:.3f}", f"{v['seconds']:.0f} s", f"{train_s[name]:.0f} s"])
        cal = [[c["model"], f"{100 * c['coverage']:.1f} %", f"{c['width']:.2f}",
                "—" if "coverage50" not in c else f"{100 * c['coverage50']:.1f} %",
                "—" if "on_mode" not in c else f"{100 * c['on_mode']:.1f} %",
                "—" if "seconds" not in c else f"{c['seconds']:.0f} s"] for c in r["calibration"]]
        t = r["times"]
        parts.append(
            f"### Ensembles on toy:grid25 (seed {r['seed']}; {steps:,} × 256 per member; {r['n_samples']:,} samples, "
            "heun 35 NFE)\n\n"
            + table(["model", "sampling", "modes covered", "within 3 std", "share TV from uniform", "sampling time",
                     "training time"], lines)
            + f"\n\nThe single model and the ensemble of 2 are the first one and two members of the ensemble of 4 "
            f"(member k trains from seed {r['seed']} + k, bit for bit the single run of that seed), so the rows "
            f"share their training. Members trained one after another (the default, train.ensemble_batched=false; "
            f"batched: the next table): {per:.0f} s each on average "
            f"(members {', '.join(f'{w:.0f}' for w in r['member_wall_s'])} s). Training the ensemble of 2 took "
            f"{t['train_to_2']['wall_s']:.0f} s wall "
            f"({t['train_to_2']['cpu_s']:.0f} s CPU), adding members 2–3 {t['train_to_4']['wall_s']:.0f} s "
            f"({t['train_to_4']['cpu_s']:.0f} s CPU), the half-step ensemble {t['train_half']['wall_s']:.0f} s "
            f"({t['train_half']['cpu_s']:.0f} s CPU); sampling {t['sampling_cpu_s']:.0f} s CPU, calibration "
            f"{t['calibration_cpu_s']:.0f} s CPU.{members_note} Mean members' spread of the denoised estimate along "
            "the path (mixture, 1,000 samples, normalised units): "
            + ", ".join(f"{k} {v:.4f}" for k, v in r["spread"].items()) + ".\n\n"
            f"Calibration: {N_CALIBRATION} held-out points, one coordinate hidden (x and y alternately), {DRAWS} "
            "draws each by `impute` (RePaint resampling 5, heun 18 steps); the share of true values inside the "
            "central 90 % band of the draws (their 5 % and 95 % quantiles; goal 85–95 %), and its mean width. "
            f"With {DRAWS} draws even exact draws cover less than 90 %: the reference row is the exact conditional "
            "distribution sampled alike. Given one coordinate, the hidden one is one of 5 equally likely modes (−4 … "
            "4, std 0.05), so every 90 % band runs from inside the lowest mode to inside the highest (width ≈ 8): its "
            "coverage tests the mode weights and the outer modes' spread; the 50 % band ends inside the second and "
            "fourth modes and tests their spread; the last column is the share of completions that land on a mode "
            "rather than between two.\n\n"
            + table(["draws from", "inside the 90 % band", "its mean width", "inside the 50 % band",
                     "draws within 3 std of a mode", "imputation time"], cal))
    return "\n\n".join(parts)


SPEED_RUNS = {"grid25": ({"source": "toy:grid25"}, 256, 600), "digits": ({"source": "digits"}, 128, 150)}


def loop_seconds(run_dir: Path) -> tuple[float, int]:
    """Seconds and steps from a run's first to its last log line (the training loop, not setup or the summary)."""
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return recs[-1]["wall_s"] - recs[0]["wall_s"], recs[-1]["step"] - recs[0]["step"]


def run_speed(name: str, ks: list[int], quick: bool) -> dict:
    import time

    from safetensors.torch import load_file

    from _common import today

    data, batch, steps = SPEED_RUNS[name]
    steps = 40 if quick else steps
    started, rows = today(), []
    for k in ks:
        row: dict = {"k": k}
        for mode in ("off", "on"):
            out = ROOT_OUT / f"speed-{name}-k{k}-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            train({"data": data, "train": {"steps": steps, "batch_size": batch, "ensemble": k,
                                           "ensemble_batched": mode == "on", "log_every": max(steps // 12, 1),
                                           "sample_metrics_every": 0, "sample_every": 0}}, out=out, progress=False)
            wall = time.perf_counter() - t0
            spans = [loop_seconds(out / "members" / str(i)) for i in range(k)]
            loop = max(s for s, _ in spans) if mode == "on" else sum(s for s, _ in spans)
            row[mode] = {"train_wall_s": round(wall, 1), "loop_s": round(loop, 1),
                         "member_samples_per_s": round(k * spans[0][1] * batch / loop, 1),
                         "training": json.loads((out / "ensemble.json").read_text())["training"]}
            print(name, k, mode, json.dumps(row[mode]), flush=True)
        diffs = []
        for i in range(k):
            a, b = (load_file(str(ROOT_OUT / f"speed-{name}-k{k}-{m}" / "members" / str(i) / "checkpoints" /
                                  f"step-{steps}" / "model.safetensors")) for m in ("off", "on"))
            diffs.append(max(float((a[t] - b[t]).abs().max() / (a[t].abs().max() + 1e-12)) for t in a))
        row["weights_rel_diff"] = max(diffs)
        rows.append(row)
    return {"data": name, "batch": batch, "steps": steps, "started": started, "finished": today(), "rows": rows}


def speed_report(res: dict) -> str:
    runs = [v for k, v in sorted(res.items()) if k.startswith("speed/")]
    if not runs:
        return ""
    lines = []
    for r in runs:
        for row in r["rows"]:
            off, on = row["off"], row["on"]
            lines.append([r["data"], f"{r['steps']} × {r['batch']}", row["k"], f"{off['member_samples_per_s']:,.0f}",
                          f"{on['member_samples_per_s']:,.0f}",
                          f"{on['member_samples_per_s'] / off['member_samples_per_s']:.2f}×",
                          f"{off['train_wall_s']:.0f} s", f"{on['train_wall_s']:.0f} s",
                          f"{row['weights_rel_diff']:.1e}"])
    when = "; ".join(f"{r['data']} {r['started']} – {r['finished']}" for r in runs)
    return ("### Ensembles trained batched against one member after another (`--part speed`)\n\n"
            + table(["data", "steps × batch", "members", "one after another: member-samples/s",
                     "batched: member-samples/s", "batched / one after another", "train() wall, one after another",
                     "train() wall, batched", "largest relative weight difference"], lines)
            + f"\n\nOne thread (OMP_NUM_THREADS=1) on a CPU shared with other work ({when}). Member-samples/s: "
            "the members' training samples per second of the training loop, from each member's metrics.jsonl "
            "(first to last log line; validation included, setup and the final summary not); one after another "
            "is K separate runs, bit for bit. The wall time is the whole `train` call (setup, final samples and "
            "summaries of every member included). The last column compares each member's final weights between "
            "the two ways (the largest over tensors of max |Δw| / max |w|): a batched step differs from a separate "
            "one by float rounding only (tests/test_ensemble_batched.py: < 1e-4 after 40 steps), but over hundreds "
            "of steps training amplifies such differences as it amplifies those between thread counts (section "
            "\"Stress matrix\"), so the batched members end as other draws of the same training, not as copies.")


DIGITS_N, DIGITS_DRAWS = 1000, 20


def run_digits(seed: int, steps: int, quick: bool) -> dict:
    import time

    from _common import today
    from steadydiff.data import DataConfig, load_data
    from steadydiff.metrics.features import frechet_feature_distance, train_feature_net

    started = today()
    base = {"data": {"source": "digits", "holdout": 297},
            "train": {"steps": steps, "batch_size": 128, "seed": seed, "conditional": "off", "masks": "all",
                      "sample_metrics_every": 0, "sample_every": 0}}
    out, half = ROOT_OUT / f"digits-ens-s{seed}", ROOT_OUT / f"digits-ens-half-s{seed}"
    for d in (out, half):
        shutil.rmtree(d, ignore_errors=True)
    walls = {}
    for k in (2, 4):
        t0 = time.perf_counter()
        train({**base, "train": {**base["train"], "ensemble": k}}, out=out, progress=False)
        walls[f"train_to_{k}"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    train({**base, "train": {**base["train"], "steps": steps // 2, "ensemble": 2}}, out=half, progress=False)
    walls["train_half"] = round(time.perf_counter() - t0, 1)
    ds = load_data(DataConfig(source="digits", holdout=297))

    def unit(x: np.ndarray) -> np.ndarray:
        return np.clip(x / 16.0, 0.0, 1.0).astype(np.float32)

    held = unit(ds.holdout)
    net = train_feature_net(unit(ds.train), ds.train_labels, seed=0)
    n = 200 if quick else DIGITS_N
    floor = frechet_feature_distance(net, unit(ds.train[:n]), held)
    ens4 = load(out)
    single, ens2, ens_half = ens4.members[0], Ensemble.of(ens4.members[:2], seed=seed), load(half)
    rows: dict = {}
    for name, model, modes in (("single", single, (None,)), ("member 1", ens4.members[1], (None,)),
                               ("ensemble of 2", ens2, ("mixture", "mean")),
                               ("ensemble of 4", ens4, ("mixture", "mean")),
                               ("ensemble of 2, half steps", ens_half, ("mixture", "mean"))):
        rows[name] = {}
        for mode in modes:
            t0 = time.perf_counter()
            x = model.sample(n, seed=0, **({} if mode is None else {"ensemble": mode}))
            rows[name][mode or ""] = {"fd": frechet_feature_distance(net, unit(x), held),
                                      "seconds": round(time.perf_counter() - t0, 1)}
            print(name, mode, json.dumps(rows[name][mode or ""]), flush=True)
    x = ds.holdout[:60] if quick else ds.holdout
    given = x.astype(np.float32).copy()
    given[:, :, :, 4:] = np.nan
    truth = x[:, :, :, 4:]
    draws = 5 if quick else DIGITS_DRAWS
    cal = []
    for name, model in (("single model, multi-draw", single), ("ensemble of 2, mixture", ens2),
                        ("ensemble of 4, mixture", ens4), ("ensemble of 2 at half steps, mixture", ens_half)):
        t0 = time.perf_counter()
        done = model.impute(given, draws=draws, seed=0)[..., 4:]  # (draws, n, 1, 8, 4)
        lo, hi = np.quantile(done, [0.05, 0.95], axis=0)
        inside = (truth >= lo - 1e-6) & (truth <= hi + 1e-6)
        ink = truth > 0
        cal.append({"model": name, "coverage": float(inside.mean()), "coverage_ink": float(inside[ink].mean()),
                    "width": float((hi - lo).mean()), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(cal[-1]), flush=True)
    return {"seed": seed, "steps": steps, "started": started, "finished": today(), "n_samples": n, "floor": floor,
            "draws": draws, "times": walls, "rows": rows, "calibration": cal}


def right_half_coverage(model, quick: bool, **kw) -> dict:
    """The 90 % band coverage of 20 completions of each held-out digit's right half (`--part digits`)."""
    import time

    from steadydiff.data import DataConfig, load_data

    ds = load_data(DataConfig(source="digits", holdout=297))
    x = ds.holdout[:60] if quick else ds.holdout
    given = x.astype(np.float32).copy()
    given[:, :, :, 4:] = np.nan
    truth = x[:, :, :, 4:]
    t0 = time.perf_counter()
    done = model.impute(given, draws=5 if quick else DIGITS_DRAWS, seed=0, **kw)[..., 4:]
    lo, hi = np.quantile(done, [0.05, 0.95], axis=0)
    inside = (truth >= lo - 1e-6) & (truth <= hi + 1e-6)
    return {"coverage": float(inside.mean()), "coverage_ink": float(inside[truth > 0].mean()),
            "width": float((hi - lo).mean()), "seconds": round(time.perf_counter() - t0, 1)}


def run_digits_mcdropout(steps: int, quick: bool, reuse: bool = False) -> dict:
    from _common import today

    started = today()
    out = ROOT_OUT / "digits-mcdrop-s0"
    done = out / "summary.json"
    if not (reuse and done.is_file() and json.loads(done.read_text()).get("steps") == steps):
        shutil.rmtree(out, ignore_errors=True)
        train({"data": {"source": "digits", "holdout": 297}, "net": {"unet": {"dropout": 0.1}},
               "train": {"steps": steps, "batch_size": 128, "seed": 0, "conditional": "off", "masks": "all",
                         "sample_metrics_every": 0, "sample_every": 0}}, out=out, progress=False)
    model = load(out)
    cal = []
    for name, kw in (("dropout 0.1 run, multi-draw", {}), ("dropout 0.1 run, MC dropout (1 pass per step)",
                                                            {"mc_dropout": 1})):
        cal.append({"model": name, **right_half_coverage(model, quick, **kw)})
        print(json.dumps(cal[-1]), flush=True)
    return {"steps": steps, "started": started, "finished": today(), "calibration": cal}


def digits_report(res: dict) -> str:
    runs = [v for k, v in sorted(res.items()) if k.startswith("digits/")]
    if not runs:
        return ""
    parts = []
    for r in runs:
        steps, floor = r["steps"], r["floor"]
        lines = [[name, mode or "—", f"{v['fd']:.2f}", f"{v['fd'] / floor:.2f}×", f"{v['seconds']:.0f} s"]
                 for name, modes in r["rows"].items() for mode, v in modes.items()]
        cal = [[c["model"], f"{100 * c['coverage']:.1f} %", f"{100 * c['coverage_ink']:.1f} %", f"{c['width']:.2f}",
                f"{c['seconds']:.0f} s"] for c in r["calibration"]]
        t = r["times"]
        parts.append(
            f"### Ensembles on digits (seed {r['seed']}; {steps:,} × 128 per member, unconditional, train.masks=all; "
            f"{r['n_samples']:,} samples, heun 35 NFE)\n\n"
            + table(["model", "sampling", "FD", "FD / floor", "sampling time"], lines)
            + f"\n\nFloor: {r['n_samples']:,} training digits against the 297 held-out digits, FD {floor:.2f}. The "
            "single model and the ensemble of 2 are the first one and two members of the ensemble of 4 (member k "
            f"from seed {r['seed']} + k); members trained one after another (the CPU default): the ensemble of 2 in "
            f"{t['train_to_2']:.0f} s, members 2–3 in {t['train_to_4']:.0f} s, the half-step ensemble in "
            f"{t['train_half']:.0f} s (one thread beside other benchmarks; {r['started']} – {r['finished']}).\n\n"
            f"Calibration: the right half of each of the 297 held-out digits unknown (32 of 64 pixels, values 0–16), "
            f"{r['draws']} completions each by `impute` (the mask-conditioned network; an ensemble's draws each from "
            "one member); the share of true pixel values inside the central 90 % band of the draws (goal 85–95 %), "
            "over all unknown pixels and over the inked ones (true value > 0), and the band's mean width.\n\n"
            + table(["draws from", "inside the 90 % band", "inked pixels inside", "mean width (0–16)",
                     "imputation time"], cal))
    mc = res.get("digits-mcdropout")
    if mc:
        rows = [[c["model"], f"{100 * c['coverage']:.1f} %", f"{100 * c['coverage_ink']:.1f} %", f"{c['width']:.2f}",
                 f"{c['seconds']:.0f} s"] for c in mc["calibration"]]
        parts.append(f"MC dropout (`--part digits-mcdropout`, {mc['started']} – {mc['finished']}): one run of the same "
                     f"protocol ({mc['steps']:,} × 128) with U-Net dropout 0.1, its right-half completions drawn "
                     "plainly and with dropout left on (one pass per solver step).\n\n"
                     + table(["draws from", "inside the 90 % band", "inked pixels inside", "mean width (0–16)",
                              "imputation time"], rows))
    return "\n\n".join(parts)


def k_diffusion_sampling():
    """k_diffusion.sampling from benchmarks/out/kd-site, without running the package's __init__ (which imports its
    image models) and with empty stand-ins for the torchvision modules its utils import (see the docstring)."""
    import importlib
    import sys
    import types

    site = OUT / "kd-site"
    if not (site / "k_diffusion").is_dir():
        raise SystemExit(f"k-diffusion is not installed in {site}; see this script's docstring for the command")
    sys.path.append(str(site))
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(name, types.ModuleType(name))
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(site / "k_diffusion")]
    sys.modules.setdefault("k_diffusion", pkg)
    return importlib.import_module("k_diffusion.sampling")


def run_nll_anchor(quick: bool) -> dict:
    import math
    import time

    import torch

    from _common import today
    from steadydiff.diffusion.analytic import GaussianMixtureDenoiser
    from steadydiff.metrics.likelihood import log_likelihood

    kd = k_diffusion_sampling()
    started, n, sigma_min, sigma_max = today(), 40 if quick else 200, 1e-3, 80.0
    g = torch.Generator().manual_seed(0)

    def closed_form(x: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
        v, d = std**2 + sigma_min**2, x.shape[1]
        logs = -0.5 * ((x.double()[:, None] - means[None]) ** 2).sum(-1) / v - 0.5 * d * math.log(2 * math.pi * v)
        return torch.logsumexp(logs, 1) - math.log(len(means))

    def both(denoise, x: torch.Tensor, sigma_data: float) -> dict:
        t0 = time.perf_counter()
        ours = log_likelihood(denoise, x, sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max,
                              generator=torch.Generator().manual_seed(1))
        t_ours = time.perf_counter() - t0
        torch.manual_seed(1)  # k-diffusion's probe is drawn from the global generator
        t0 = time.perf_counter()
        theirs, info = kd.log_likelihood(lambda y, s: denoise(y, s).to(y.dtype), x.double(), sigma_min, sigma_max)
        t_kd = time.perf_counter() - t0
        return {"ours": ours.double(), "kd": theirs.double(), "ours_s": t_ours, "kd_s": t_kd,
                "kd_fevals": int(info["fevals"])}

    rows = []
    for dim, k, std in ((2, 4, 0.3), (16, 8, 0.4), (64, 8, 0.4)):
        means = torch.randn(k, dim, generator=g, dtype=torch.float64)
        x = (means[torch.randint(0, k, (n,), generator=g)] + std * torch.randn(n, dim, generator=g,
                                                                               dtype=torch.float64)).float()
        denoiser = GaussianMixtureDenoiser(means, std)
        r = both(denoiser, x, float(x.std()))
        truth = closed_form(x, means, std)
        rows.append({"case": f"mixture of {k}, {dim}-D, exact denoiser", "dim": dim, "n": n,
                     "truth": float(truth.mean()), "ours": float(r["ours"].mean()), "kd": float(r["kd"].mean()),
                     "ours_abs_err": float((r["ours"] - truth).abs().mean()),
                     "kd_abs_err": float((r["kd"] - truth).abs().mean()),
                     "divergence": "exact" if dim <= 16 else "Hutchinson, 4 probes",
                     "ours_s": round(r["ours_s"], 1), "kd_s": round(r["kd_s"], 1), "kd_fevals": r["kd_fevals"]})
        print(json.dumps(rows[-1]), flush=True)
    run = ROOT_OUT / "mcdrop-s0"
    if (run / "config.toml").is_file():
        from steadydiff.data import DataConfig, load_data

        model = load(run)
        items = load_data(DataConfig(source="toy:grid25")).holdout[:n]
        x = torch.as_tensor(np.asarray(model.normaliser.forward(items), dtype=np.float32))
        r = both(lambda y, s: model.denoiser(y.float(), s.float()), x, model.config.diffusion.sigma_data)
        rows.append({"case": "trained grid25 network (mcdrop-s0, EMA), held-out points", "dim": 2, "n": n,
                     "truth": None, "ours": float(r["ours"].mean()), "kd": float(r["kd"].mean()),
                     "ours_abs_err": None, "kd_abs_err": None,
                     "ours_kd_abs_diff": float((r["ours"] - r["kd"]).abs().mean()), "divergence": "exact",
                     "ours_s": round(r["ours_s"], 1), "kd_s": round(r["kd_s"], 1), "kd_fevals": r["kd_fevals"]})
        print(json.dumps(rows[-1]), flush=True)
    return {"started": started, "finished": today(), "rows": rows}


def nll_anchor_report(res: dict) -> str:
    r = res.get("nll-anchor")
    if not r:
        return ""

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    lines = [[row["case"], row["n"], fmt(row["truth"]), f"{row['ours']:.3f}", f"{row['kd']:.3f}",
              fmt(row["ours_abs_err"]), fmt(row["kd_abs_err"]) if row["truth"] is not None else
              f"ours − k-diffusion: {row['ours_kd_abs_diff']:.3f}", row["divergence"],
              f"{row['ours_s']:.1f} s / {row['kd_s']:.1f} s ({row['kd_fevals']} evaluations)"] for row in r["rows"]]
    return ("### Likelihood against k-diffusion's `log_likelihood` (`--part nll-anchor`)\n\n"
            + table(["denoiser and points", "items", "closed form (nats/item)", "ours", "k-diffusion",
                     "ours: mean abs. error", "k-diffusion: mean abs. error", "our divergence",
                     "time ours / k-diffusion"], lines)
            + f"\n\nMean log-likelihood per item in nats (higher is likelier); the errors are per item (mean absolute) "
            "against the closed-form density of the mixture at σ_min = 0.001. Ours: Heun, 128 steps (256 "
            "evaluations), exact divergence up to 16 dimensions, else Hutchinson with 4 Rademacher probes; "
            "k-diffusion: dopri5 with atol = rtol = 1e-4 and one probe. One thread beside other benchmarks "
            f"({r['started']} – {r['finished']}).")


def run_nll(quick: bool) -> dict:
    from steadydiff.evaluate import likelihood

    out = ROOT_OUT / "nll-digits"
    shutil.rmtree(out, ignore_errors=True)
    steps = 200 if quick else 3000
    cfg = {"data": {"source": "digits"},
           "train": {"steps": steps, "checkpoint_every": steps // 6, "keep_checkpoints": 10, "keep_best": False,
                     "sample_metrics_every": 0, "sample_every": 0}}
    train(cfg, out=out, progress=False)
    rows = []
    for ckpt in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1])):
        r = likelihood(out, checkpoint=ckpt.name, n=20 if quick else 200, steps=8 if quick else 64)
        rows.append({"step": r["step"], "train": r["train"], "holdout": r["holdout"], "gap": r["gap"],
                     "seconds_per_1000_items": r["seconds_per_1000_items"]})
        print(json.dumps(rows[-1]), flush=True)
    return {"steps": steps, "rows": rows}


def nll_report(res: dict) -> str:
    r = res.get("nll/digits")
    if not r:
        return ""
    lines = [[x["step"], f"{x['train']['mean']:.3f} ± {x['train']['se']:.3f}",
              f"{x['holdout']['mean']:.3f} ± {x['holdout']['se']:.3f}",
              f"{x['gap']['value']:+.3f} ± {x['gap']['se']:.3f}", f"{x['seconds_per_1000_items']:.0f} s"]
             for x in r["rows"]]
    first = r["rows"][0]
    return (f"### Likelihood over training: digits (3,000 × 128, EMA weights, bits/dim, {first['train']['n']} training "
            f"and {first['holdout']['n']} held-out digits, 64 Heun steps, Hutchinson 4 probes)\n\n"
            + table(["step", "training digits", "held-out digits", "held-out − training", "time per 1,000 items"],
                    lines)
            + "\n\nA uniform distribution over digits' 17 value levels scores log₂ 17 = 4.09 bits/dim. The held-out "
            "digits stay within about one standard error of the training digits at every checkpoint: no sign of "
            "memorisation in 3,000 steps (the near-copy check agrees, section \"Know your model\"). The likelihood "
            "itself worsens after step 1,000 while sample quality improves; a likely reading (not tested here) is "
            "that the model concentrates its density on the 17 levels, where uniform dequantisation spreads the "
            "test points across whole levels. Time: one core shared with another benchmark.")


def report() -> str:
    res = load_results(RESULTS)
    runs = [v for k, v in sorted(res.items()) if k.startswith("ensemble/")]
    where = PROVENANCE + "".join(
        f" The ensemble tables (seed {r['seed']}) come from `.venv/bin/python benchmarks/uncertainty.py --part "
        f"ensemble` ({r['started']} – {r['finished']}), one thread (OMP_NUM_THREADS=1) on a CPU shared with other "
        "benchmarks." for r in runs if "started" in r)
    parts = [where, mmd_report(res), mcdropout_report(res), ensemble_report(res), speed_report(res), digits_report(res),
             nll_anchor_report(res), nll_report(res)]
    return "\n\n".join(p for p in parts if p)


def mcdropout_report(res: dict) -> str:
    runs = [v for k, v in sorted(res.items()) if k.startswith("mcdropout/")]
    if not runs:
        return ""
    lines = []
    for r in runs:
        for passes, v in r["rows"].items():
            lines.append([r["seed"], "plain" if passes == "0" else f"MC dropout, {passes} passes",
                          f"{v['modes_covered']}/25", f"{100 * v['high_quality']:.1f} %", f"{v['share_tv']:.3f}",
                          "—" if v["spread"] is None else f"{v['spread']:.4f}", f"{v['seconds']:.0f} s"])
    text = (f"### MC dropout on toy:grid25 (MLP dropout 0.1, {runs[0]['steps']:,} × 256, {N_SAMPLES:,} samples)\n\n"
            + table(["seed", "sampling", "modes covered", "within 3 std", "share TV from uniform",
                     "mean spread (normalised units)", "sampling time"], lines))
    cal = [[r["seed"], c["model"], f"{100 * c['coverage']:.1f} %", f"{c['width']:.2f}",
            f"{100 * c['coverage50']:.1f} %", f"{100 * c['on_mode']:.1f} %",
            "—" if "seconds" not in c else f"{c['seconds']:.0f} s"]
           for r in runs if "calibration" in r for c in r["calibration"]]
    if cal:
        text += ("\n\nCalibration of imputation with dropout left on (the same runs): "
                 f"{N_CALIBRATION} held-out points, one coordinate hidden (x and y alternately), {DRAWS} draws each; "
                 "goal of the issue: the 90 % band covers 85–95 % of the true values.\n\n"
                 + table(["seed", "draws from", "90 % band covers", "90 % band width", "50 % band covers",
                          "draws on a mode", "imputation time"], cal))
    return text


def mmd_report(res: dict) -> str:
    rows = [v for k, v in sorted(res.items()) if k.startswith("mmd/")]
    if not rows:
        return ""
    by_weight: dict[float, list[dict]] = {}
    for r in rows:
        by_weight.setdefault(r["weight"], []).append(r)
    lines = []
    for w, rs in sorted(by_weight.items()):
        for r in sorted(rs, key=lambda r: r["seed"]):
            lines.append([f"{w:g}", r["seed"], f"{r['modes_covered']}/25", f"{100 * r['high_quality']:.1f} %",
                          f"{r['rare_covered']}/{RARE}", " ".join(f"{v:.2f}" for v in r["rare_share_ratio"]),
                          f"{r['share_tv']:.3f}", f"{r['samples_per_s']:,.0f}"])
    summary = []
    for w, rs in sorted(by_weight.items()):
        summary.append([f"{w:g}", len(rs), f"{statistics.mean(r['modes_covered'] for r in rs):.1f}",
                        f"{statistics.mean(r['rare_covered'] for r in rs):.1f}/{RARE}",
                        f"{statistics.mean(r['share_tv'] for r in rs):.3f}",
                        f"{100 * statistics.mean(r['high_quality'] for r in rs):.1f} %",
                        f"{statistics.median(r['samples_per_s'] for r in rs):,.0f}"])
    return ("### MMD diversity term on toy:grid25-imbalanced (3,000 × 256 per run)\n\n" + table(
        ["mmd_weight", "seed", "modes covered", "within 3 std", "rarest 5 covered",
         "rarest 5: sampled share / weight", "share TV distance", "samples/s"], lines) + "\n\nMeans over seeds:\n\n"
        + table(["mmd_weight", "runs", "modes covered", "rarest 5 covered", "share TV distance", "within 3 std",
                 "samples/s (median)"], summary))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--part", {"nargs": "+",
                    "default": ["mmd", "mcdropout", "ensemble", "speed", "digits", "digits-mcdropout", "nll-anchor",
                                "nll"],
                    "choices": ["mmd", "mcdropout", "ensemble", "speed", "digits", "digits-mcdropout", "nll-anchor",
                                "nll"]}),
        ("--speed-data", {"nargs": "+", "default": ["grid25", "digits"], "choices": list(SPEED_RUNS)}),
        ("--members", {"nargs": "+", "type": int, "default": [2, 4]}),
        ("--digits-steps", {"type": int, "default": 3000}),
        ("--reuse", {"action": "store_true", "help": "digits-mcdropout: evaluate its finished run in benchmarks/out"}),
        ("--weights", {"nargs": "+", "type": float, "default": [0.0, 1.0]}),
        ("--seeds", {"nargs": "+", "type": int, "default": [0, 1, 2]}),
        ("--report-only", {"action": "store_true"}),
    ])
    if not args.report_only and "mmd" in args.part:
        for seed in args.seeds:
            for w in args.weights:
                r = run_mmd(w, seed, 200 if args.quick else 3000)
                print(json.dumps(r), flush=True)
                if not args.quick:
                    save_result(RESULTS, f"mmd/{w:g}/s{seed}", r)
    if not args.report_only and "mcdropout" in args.part:
        for seed in args.seeds[:2]:
            r = run_mcdropout(seed, 200 if args.quick else 3000, args.quick)
            print(json.dumps(r), flush=True)
            if not args.quick:
                save_result(RESULTS, f"mcdropout/s{seed}", r)
    if not args.report_only and "ensemble" in args.part:
        for seed in args.seeds[:1] if args.seeds == [0, 1, 2] else args.seeds:  # default: seed 0 (~30 min CPU)
            r = run_ensemble(seed, 200 if args.quick else 3000, args.quick)
            print(json.dumps(r), flush=True)
            if not args.quick:
                save_result(RESULTS, f"ensemble/s{seed}", r)
    if not args.report_only and "speed" in args.part:
        for name in args.speed_data:
            r = run_speed(name, args.members, args.quick)
            if not args.quick:
                save_result(RESULTS, f"speed/{name}", r)
    if not args.report_only and "digits" in args.part:
        r = run_digits(0, 60 if args.quick else args.digits_steps, args.quick)
        if not args.quick:
            save_result(RESULTS, "digits/s0", r)
    if not args.report_only and "digits-mcdropout" in args.part:
        r = run_digits_mcdropout(60 if args.quick else args.digits_steps, args.quick, args.reuse)
        if not args.quick:
            save_result(RESULTS, "digits-mcdropout", r)
    if not args.report_only and "nll-anchor" in args.part:
        r = run_nll_anchor(args.quick)
        if not args.quick:
            save_result(RESULTS, "nll-anchor", r)
    if not args.report_only and "nll" in args.part:
        r = run_nll(args.quick)
        if not args.quick:
            save_result(RESULTS, "nll/digits", r)
    if not args.quick:
        text = report()
        print(text)
        write_section("uncertainty", "Diversity and uncertainty (benchmarks/uncertainty.py)", text)


if __name__ == "__main__":
    main()
