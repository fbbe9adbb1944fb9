"""conditional — class-conditional digits: class agreement, Fréchet distance against its floor, guidance, canary.

Protocol of benchmarks/digits_quality.py (the default U-Net on scikit-learn's 8×8 digits, 297 held out, 3,000 steps
at batch 128, FD of 1,500 samples against the 297 held-out digits in the features of a digit classifier trained on
the 1,500 training digits, two sampling seeds), with the labels:
- a conditional run (the default for labelled data: train.conditional=auto, train.cond_dropout 0.1) and an
  unconditional one (train.conditional=off), same seed;
- 150 samples per class; class agreement = the share the classifier assigns to the requested class; FD of the
  pooled 1,500; at 35 NFE (Heun 18 steps) and 10 NFE (DPM-Solver++(2M) 10 steps) — NFE counts solver evaluations;
  guidance with w ∉ {0, 1} evaluates the network twice per evaluation (one batched call);
- classifier-free guidance weights w, guidance limited to a σ interval (Kynkäänniemi et al. 2024), and
  autoguidance (Karras et al. 2024) with the raw weights, and with the step-1,000 EMA, as the guiding model;
- the unconditional samples of the conditional run (w = 0) against the unconditional run;
- the condition canary: runs whose labels were shuffled, or all set to one class (1,000 steps each), must raise
  `condition_ignored`; the real run must not. cond_gain at every validation of each run.

Text (`--part text`): the same digits, each captioned from generated wordings that name the digit (as a word or
a numeral) and describe its stroke weight — thin, regular or bold by the terciles of the training digits' ink mass
(sum of pixels) — trained with the default jointly trained text encoder (3,000 steps × 128). For every digit and
weight, 50 samples from the prompt "a {weight} {digit word}" (a wording of the training captions): class agreement
(the classifier) and stroke-weight agreement (the sample's ink mass in the requested tercile).

Inpainting (`--part inpaint`): the right half of each of the 297 held-out digits unknown; completions by the
training-free method (known values replace the model's estimate; plain, and with RePaint resampling 5) on the
unconditional run, and by a run trained with train.masks=all (3,000 × 128, unconditional); the classifier's accuracy
on the completions against the true labels (two seeds), beside scikit-learn's KNNImputer (5 neighbours, fitted on
the training digits) on the same masks, the half-digits with the right half left blank, and the complete digits.
Also: the train.masks=all run guided by its known values (`impute(known_guidance=w)`: the empty mask as the
unconditional branch), and a run trained on half-image masks only (train.masks=half, the mask this task meets).

Over training seeds (`--part seeds --train-seeds 0 1 2`): the goal figures again for each training seed (seed 0 is
the classes and inpaint parts' runs; another seed trains its own conditional, unconditional and train.masks=half
runs with train.seed set): agreement and FD at the default guidance, w 1.5 in the σ interval, the w = 0 samples
against the same seed's unconditional run, and the half-mask run's completions (single draws, and the per-pixel
median and mean of 8) beside KNNImputer. Each seed's figures are kept in its run folder (seed_results.json), so
seeds can be trained and scored in separate processes and gathered with `--reuse`.

Super-resolution (`--part superres`): a run trained with train.lowres=2 (3,000 × 128, unconditional) brings the
2 × 2 block means of each held-out digit back to 8 × 8 (`Model.upscale`, two seeds); class accuracy, RMSE, block-mean
consistency and FD of the outputs, beside nearest and bicubic upscaling of the same 4 × 4 inputs.

    .venv/bin/python benchmarks/conditional.py [--quick] [--reuse] [--part classes text inpaint superres seeds]
        [--train-seeds 0 1 2]
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import steadydiff
from _common import OUT, fmt_s, parse_args, table, write_section
from steadydiff.data import DataConfig, load_data
from steadydiff.metrics.features import accuracy, frechet_feature_distance, predict, train_feature_net

HOLDOUT = 297
SEEDS = (0, 1)
SETTINGS = [("heun", 18), ("dpmpp-2m", 10)]  # 35 and 10 NFE
WEIGHTS = [0.0, 1.0, 1.25, 1.5, 2.0]
INTERVAL_WEIGHTS = [1.25, 1.5, 2.0]
INTERVAL = (0.28, 2.9)  # σ range of guidance (Kynkäänniemi et al. 2024's EDM2 interval, in data units)
GOALS = {"accuracy": 0.99, 35: 0.90, 10: 1.00, "uncond_ratio": 1.10}
PER_CLASS = 150
PARTS = ("classes", "text", "inpaint", "superres", "seeds")
DRAWS = 8  # completions per item behind the inpainting medians
KNOWN_GUIDANCE = (2.0, 3.0)  # impute(known_guidance=w) on the train.masks=all run


def to_unit(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 16.0) / 8.0 - 1.0).astype(np.float32)


def train_run(config: dict, out: Path, reuse: bool, data=None) -> dict:
    done = out / "summary.json"
    if reuse and done.exists() and json.loads(done.read_text()).get("steps") == config["train"]["steps"]:
        return json.loads(done.read_text())
    if out.exists():
        shutil.rmtree(out)
    return steadydiff.train(config, data=data, out=out, progress=False).summary


def incidents(run: Path) -> list[dict]:
    path = run / "incidents.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def gains(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["cond_gain"]) for r in rows if "cond_gain" in r]


DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WEIGHTS_TEXT = ["thin", "regular", "bold"]
TEMPLATES = ["a {w} {d}", "the digit {n}, {w}", "{d} written in a {w} stroke", "{w} handwritten {d}",
             "number {n} drawn {w}", "a {d}"]  # the last names no weight


def ink_terciles(x: np.ndarray) -> np.ndarray:
    mass = x.reshape(len(x), -1).sum(1)
    return np.quantile(mass, [1 / 3, 2 / 3])


def weight_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, x.reshape(len(x), -1).sum(1))


def captions_for(x: np.ndarray, y: np.ndarray, edges: np.ndarray, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    weights = weight_of(x, edges)
    return [TEMPLATES[rng.integers(len(TEMPLATES))].format(w=WEIGHTS_TEXT[wt], d=DIGIT_WORDS[k], n=k)
            for k, wt in zip(y, weights, strict=True)]


class CaptionedDigits(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, captions: list[str]):
        self.x, self.captions = x.astype(np.float32), captions

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.captions[i]


def text_part(args, root: Path, ds, net, held_u, floor: float) -> None:
    steps, per = (60, 5) if args.quick else (3000, 50)
    edges = ink_terciles(ds.train)
    cfg = {"data": {"holdout": HOLDOUT}, "train": {"steps": steps, "batch_size": 128, "checkpoint_every": 1000}}
    # The digits in load_data's order, so the held-out split is the 297 digits the classifier was not trained on.
    raw = load_data(DataConfig(source="digits", holdout=0))
    captions = captions_for(raw.train, raw.train_labels, edges, seed=0)
    t0 = time.perf_counter()
    summary = train_run(cfg, root / "text", args.reuse, data=CaptionedDigits(raw.train, captions))
    train_s = time.perf_counter() - t0
    model = steadydiff.load(root / "text")
    rows, agree_cls, agree_w = [], [], []
    t1 = time.perf_counter()
    for k in range(10):
        for wt, word in enumerate(WEIGHTS_TEXT):
            prompt = f"a {word} {DIGIT_WORDS[k]}"
            x = model.sample(per, cond=prompt, seed=k * 3 + wt)
            cls = float(np.mean(predict(net, to_unit(x)) == k))
            w_ok = float(np.mean(weight_of(x, edges) == wt))
            agree_cls.append(cls)
            agree_w.append(w_ok)
            rows.append([prompt, f"{100 * cls:.0f} %", f"{100 * w_ok:.0f} %"])
    eval_s = time.perf_counter() - t1
    pooled = model.sample(1500, seed=0)  # captions drawn like the training items'
    fd = frechet_feature_distance(net, to_unit(pooled), held_u)
    body = "\n".join([
        f"`digits` with generated captions ({len(TEMPLATES)} wordings; weight = ink-mass tercile of the training "
        f"digits, edges {edges[0]:.0f} and {edges[1]:.0f}), 3,000 steps × 128, text encoder trained with the run "
        f"({summary['parameters']:,} parameters in all, {fmt_s(summary['wall_s'])}). {per} samples per prompt "
        f"(seeds differ per prompt), guidance {model.config.sample.guidance:g} in σ "
        f"{list(model.config.sample.guidance_interval)} (the run's sample settings).",
        "",
        f"- class agreement from captions alone: **{100 * np.mean(agree_cls):.1f} %** (goal ≥ 95 %)",
        f"- stroke-weight agreement: **{100 * np.mean(agree_w):.1f} %** (goal ≥ 70 %; chance 33 %)",
        f"- 1,500 samples from captions drawn like the training ones: FD {fd:.3f} ({fd / floor:.2f}× the floor)",
        "",
        table(["prompt", "class agreement", "weight agreement"], rows),
        "",
        f"Training {fmt_s(train_s)}, evaluation {fmt_s(eval_s)}.",
    ])
    print(body)
    if not args.quick:
        write_section("conditional_text", "Caption-conditional digits (benchmarks/conditional.py --part text)", body)


def right_half_unknown(ds) -> np.ndarray:
    """The held-out digits with their right half unknown (NaN): the inpainting task."""
    x = ds.holdout.copy()
    x[:, :, :, 4:] = np.nan
    return x


def knn_completion(ds, x: np.ndarray) -> np.ndarray:
    """The anchor: scikit-learn's KNNImputer (5 neighbours) fitted on the training digits."""
    from sklearn.impute import KNNImputer

    knn = KNNImputer(n_neighbors=5).fit(ds.train.reshape(len(ds.train), -1))
    return knn.transform(x.reshape(len(x), -1)).reshape(x.shape).astype(np.float32)


def holdout_accuracy(net, ds, done: np.ndarray) -> float:
    """The classifier's accuracy on completed held-out digits against their true labels."""
    return float(np.mean(predict(net, to_unit(done)) == ds.holdout_labels))


def inpaint_part(args, root: Path, base: dict, ds, net, held_u) -> None:
    t0 = time.perf_counter()
    masked_cfg = {**base, "train": {**base["train"], "conditional": "off", "masks": "all"}}
    masked_s = train_run(masked_cfg, root / "masked", args.reuse)
    half_cfg = {**base, "train": {**base["train"], "conditional": "off", "masks": "half"}}
    train_run(half_cfg, root / "masked-half", args.reuse)
    uncond_cfg = {**base, "train": {**base["train"], "conditional": "off"}}
    train_run(uncond_cfg, root / "uncond", True)  # the classes part's unconditional run, trained here if missing
    train_s = time.perf_counter() - t0
    x = right_half_unknown(ds)

    def acc(done: np.ndarray) -> float:
        return holdout_accuracy(net, ds, done)

    rows = [["complete held-out digits (the classifier's ceiling)", f"{100 * acc(ds.holdout):.1f} %", "—", "—"],
            ["right half left blank (0)", f"{100 * acc(np.nan_to_num(x, nan=0.0)):.1f} %", "—", "—"],
            ["scikit-learn KNNImputer (5 neighbours)", f"{100 * acc(knn_completion(ds, x)):.1f} %", "—", "—"]]
    t1 = time.perf_counter()
    uncond, masked = steadydiff.load(root / "uncond"), steadydiff.load(root / "masked")
    half = steadydiff.load(root / "masked-half")
    for name, model, kw in [("training-free replacement, no resampling", uncond, {"resample": 1}),
                            ("training-free replacement, RePaint resampling 5 (default)", uncond, {"resample": 5}),
                            ("mask-conditioned run (train.masks=all)", masked, {"method": "masked"}),
                            *[(f"mask-conditioned run (train.masks=all), guided by the known half, w={w:g}", masked,
                               {"method": "masked", "known_guidance": w}) for w in KNOWN_GUIDANCE],
                            ("run trained on half-images only (train.masks=half)", half, {"method": "masked"})]:
        accs, exact = [], True
        for seed in SEEDS:
            done = model.impute(x, seed=seed, **kw)
            exact &= bool(np.array_equal(done[:, :, :, :4], ds.holdout[:, :, :, :4]))
            accs.append(acc(done))
        rows.append([name, f"{100 * np.mean(accs):.1f} %", " / ".join(f"{100 * a:.1f}" for a in accs),
                     "yes" if exact else "NO"])
        print(rows[-1], flush=True)
        if kw.get("resample") != 1 and kw.get("known_guidance", 1) == 1:  # what `impute --draws 8` writes: the
            # per-pixel median of 8 completions
            draws = model.impute(x, draws=DRAWS, seed=0, **kw)
            med = np.median(draws, axis=0)
            rows.append([f"{name}: per-pixel median of {DRAWS} draws", f"{100 * acc(med):.1f} %", "seed 0",
                         "yes" if np.array_equal(med[:, :, :, :4], ds.holdout[:, :, :, :4]) else "NO"])
            print(rows[-1], flush=True)
    eval_s = time.perf_counter() - t1
    body = "\n".join([
        f"The right half of each of the {len(x)} held-out digits unknown (32 of 64 pixels); accuracy of the digit "
        f"classifier on the completions against the true labels, mean of seeds {SEEDS[0]} and {SEEDS[1]}. The "
        f"mask-conditioned run: {masked_s['parameters']:,} parameters, {fmt_s(masked_s['wall_s'])}. Guidance by the "
        "known values costs two network passes per step; the median rows cost 8 draws.",
        "",
        table(["completion", "class accuracy", "per seed", "known pixels unchanged"], rows),
        "",
        f"Training {fmt_s(train_s)} (runs reused where finished), evaluation {fmt_s(eval_s)}.",
    ])
    print(body)
    if not args.quick:
        write_section("conditional_inpaint", "Inpainting digits (benchmarks/conditional.py --part inpaint)", body)


def block_means(x: np.ndarray, f: int) -> np.ndarray:
    """(N, C, H, W) → (N, C, H/f, W/f): each f × f block's mean (what `Model.upscale` takes)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))


def superres_part(args, root: Path, base: dict, ds, net, held_u, floor: float) -> None:
    """Super-resolution ×2: a run trained with train.lowres=2 (unconditional: the 4×4 image is the condition)
    upscales the block means of the held-out digits; against nearest and bicubic upscaling of the same inputs."""
    from PIL import Image

    f = 2
    t0 = time.perf_counter()
    cfg = {**base, "train": {**base["train"], "conditional": "off", "lowres": f}}
    summary = train_run(cfg, root / "lowres", args.reuse)
    train_s = time.perf_counter() - t0
    model = steadydiff.load(root / "lowres")
    truth, labels = ds.holdout.astype(np.float32), ds.holdout_labels
    low = block_means(truth, f)

    def bicubic(a: np.ndarray) -> np.ndarray:
        up = [np.asarray(Image.fromarray(img[0].astype(np.float32), mode="F").resize((8, 8), Image.BICUBIC))
              for img in a]
        return np.clip(np.stack(up)[:, None], 0.0, 16.0)

    def scores(up: np.ndarray) -> list[str]:
        acc = float(np.mean(predict(net, to_unit(up)) == labels))
        rmse = float(np.sqrt(np.mean((up - truth) ** 2)))
        consistency = float(np.abs(block_means(up, f) - low).max())
        fd = max(0.0, frechet_feature_distance(net, to_unit(up), held_u))  # the same set: 0, not -0.00
        return [f"{100 * acc:.1f} %", f"{rmse:.2f}", f"{consistency:.3f}", f"{fd:.2f} ({fd / floor:.2f}×)"]

    rows = [["the held-out digits themselves", *scores(truth)],
            ["nearest (each 4×4 pixel repeated)", *scores(np.repeat(np.repeat(low, f, 2), f, 3))],
            ["bicubic (Pillow)", *scores(bicubic(low))]]
    t1 = time.perf_counter()
    for seed in SEEDS:
        rows.append([f"steadydiff upscale (train.lowres=2), seed {seed}", *scores(model.upscale(low, seed=seed))])
        print(rows[-1], flush=True)
    eval_s = time.perf_counter() - t1
    body = "\n".join([
        f"Each of the {len(truth)} held-out digits averaged over 2 × 2 blocks (4 × 4 pixels), then brought back to "
        "8 × 8. Class accuracy of the digit classifier against the true labels; RMSE against the real digit (pixel "
        "units 0–16); the largest difference between an output's block means and its input (0: consistent); FD of the "
        f"{len(truth)} outputs against the held-out digits in the classifier's features (the same set's FD is 0, so "
        f"the ratio is to the protocol's floor, {floor:.2f}, that of the training digits against them). The run: "
        f"{summary['parameters']:,} parameters, {summary['steps']:,} steps × 128, {fmt_s(summary['wall_s'])}.",
        "",
        table(["upscaling", "class accuracy", "RMSE", "block-mean error", "FD (× floor)"], rows),
        "",
        f"Training {fmt_s(train_s)} (reused where finished), evaluation {fmt_s(eval_s)}.",
    ])
    print(body)
    if not args.quick:
        write_section("conditional_superres", "Super-resolution of digits (benchmarks/conditional.py --part superres)",
                      body)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--reuse", {"action": "store_true", "help": "evaluate finished runs in benchmarks/out"}),
        ("--part", {"nargs": "+", "default": list(PARTS[:4]), "choices": list(PARTS)}),
        ("--train-seeds", {"nargs": "+", "type": int, "default": [0, 1, 2],
                           "help": "training seeds of --part seeds (0: the classes and inpaint parts' runs)"}),
        ("--no-inpaint", {"action": "store_true",
                          "help": "--part seeds without the half-mask runs (seeds not yet scored show —)"})])
    steps, canary_steps, per_class = (60, 60, 20) if args.quick else (3000, 1000, PER_CLASS)
    n = 10 * per_class
    base = {"data": {"source": "digits", "holdout": HOLDOUT},
            "train": {"steps": steps, "batch_size": 128, "checkpoint_every": 1000, "keep_checkpoints": 10}}
    root = OUT / ("conditional-quick" if args.quick else "conditional")
    root.mkdir(parents=True, exist_ok=True)

    ds = load_data(DataConfig(source="digits", holdout=HOLDOUT))
    train_u, held_u = to_unit(ds.train), to_unit(ds.holdout)
    net = train_feature_net(train_u, ds.train_labels, seed=0)
    net_acc = accuracy(net, held_u, ds.holdout_labels)
    floor = frechet_feature_distance(net, train_u, held_u)
    print(f"classifier {net_acc:.2%} on held-out digits; floor FD {floor:.3f}", flush=True)
    if "text" in args.part:
        text_part(args, root, ds, net, held_u, floor)
    if "inpaint" in args.part:
        inpaint_part(args, root, base, ds, net, held_u)
    if "superres" in args.part:
        superres_part(args, root, base, ds, net, held_u, floor)
    if "seeds" in args.part:
        seeds_part(args, root, base, ds, net, held_u, floor, per_class)
    if "classes" not in args.part:
        return

    # 1. The runs.
    t0 = time.perf_counter()
    cond_s = train_run(base, root / "cond", args.reuse)
    uncond_s = train_run({**base, "train": {**base["train"], "conditional": "off"}}, root / "uncond", args.reuse)
    x_all = np.concatenate([ds.train, ds.holdout])  # only to build label-faulted copies of the same items
    y_all = np.concatenate([ds.train_labels, ds.holdout_labels])
    canary_cfg = {"data": {"holdout": HOLDOUT}, "train": {"steps": canary_steps, "batch_size": 128,
                                                          "sample_metrics_every": 0, "conditional": "on"}}
    faulted = {"shuffled": np.random.default_rng(0).permutation(y_all), "one class": np.zeros_like(y_all)}
    for name, y in faulted.items():
        arr = root / f"digits-{name.replace(' ', '-')}.npz"
        np.savez(arr, x=x_all.astype(np.float32), y=y.astype(np.int64))
        train_run(canary_cfg, root / f"canary-{name.replace(' ', '-')}", args.reuse, data=str(arr))
    train_s = time.perf_counter() - t0

    # 2. Samples of the conditional run: 150 per class, two seeds, every setting and guidance.
    t1 = time.perf_counter()
    model = steadydiff.load(root / "cond")
    raw = steadydiff.load(root / "cond", ema=False)
    early = steadydiff.load(root / "cond", checkpoint="step-1000") if (root / "cond/checkpoints/step-1000").exists() \
        else None
    labels = np.repeat(np.arange(10), per_class)

    def score(x: np.ndarray) -> tuple[float, float]:
        u = to_unit(x)
        return frechet_feature_distance(net, u, held_u), float(np.mean(predict(net, u) == labels))

    def sweep(name: str, sample) -> list:
        rows = []
        for sampler, k in SETTINGS:
            fds, accs = zip(*(score(sample(sampler, k, seed)) for seed in SEEDS), strict=True)
            nfe = model.nfe(k, sampler)
            rows.append({"variant": name, "nfe": nfe, "fd": float(np.mean(fds)), "acc": float(np.mean(accs)),
                         "fds": fds})
            print(json.dumps(rows[-1]), flush=True)
        return rows

    results = []
    model.config.sample.guidance_interval = (0.0, float("inf"))
    for w in WEIGHTS:
        results += sweep(f"CFG w={w:g}", lambda s, k, seed, w=w: model.sample(n, cond=labels, guidance=w, steps=k,
                                                                             sampler=s, seed=seed))
    for w in INTERVAL_WEIGHTS:
        model.config.sample.guidance_interval = INTERVAL
        results += sweep(f"CFG w={w:g}, σ in [{INTERVAL[0]}, {INTERVAL[1]}]",
                         lambda s, k, seed, w=w: model.sample(n, cond=labels, guidance=w, steps=k, sampler=s,
                                                              seed=seed))
        model.config.sample.guidance_interval = (0.0, float("inf"))
    guides = [("raw weights", raw)] + ([("EMA at step 1,000", early)] if early is not None else [])
    for gname, gm in guides:
        for w in (1.5,):
            results += sweep(f"autoguidance by the {gname}, w={w:g}", lambda s, k, seed, w=w, gm=gm: autoguided(
                model, gm, labels, w, s, k, seed))
    uncond_model = steadydiff.load(root / "uncond")
    uncond_rows = []
    for sampler, k in SETTINGS:
        fds = [frechet_feature_distance(net, to_unit(uncond_model.sample(n, steps=k, sampler=sampler, seed=seed)),
                                        held_u) for seed in SEEDS]
        uncond_rows.append({"nfe": model.nfe(k, sampler), "fd": float(np.mean(fds))})
    eval_s = time.perf_counter() - t1

    # 3. Report.
    by = {(r["variant"], r["nfe"]): r for r in results}
    plain = {nfe: by[("CFG w=0", nfe)]["fd"] for nfe in (35, 10)}
    uncond = {r["nfe"]: r["fd"] for r in uncond_rows}
    canaries = []
    for run, label in [("cond", "real labels (3,000 steps)"), ("canary-shuffled", "labels shuffled"),
                       ("canary-one-class", "every label 0")]:
        fired = [e for e in incidents(root / run) if e.get("check") == "condition_ignored"]
        g = gains(root / run)
        canaries.append([label, "fired" if fired else "quiet", f"{fired[0]['step']:,}" if fired else "—",
                         ", ".join(f"{s}: {v:.3f}" for s, v in g[:12])])
    best = min((r for r in results if r["nfe"] == 35), key=lambda r: r["fd"])
    meets = [r for r in results if r["nfe"] == 35 and r["acc"] >= GOALS["accuracy"]]
    chosen = min(meets, key=lambda r: r["fd"]) if meets else None
    default = cond_cfg_default()
    lines = [
        f"`digits`, 3,000 steps × 128, everything else default (conditional: {cond_s['backbone']}, "
        f"{cond_s['parameters']:,} parameters, {fmt_s(cond_s['wall_s'])}; unconditional: {uncond_s['parameters']:,} "
        f"parameters, {fmt_s(uncond_s['wall_s'])}). Classifier: DigitsFeatureNet on the 1,500 training digits "
        f"(seed 0), {net_acc:.1%} on the 297 held-out. Floor FD(1,500 training digits, 297 held-out) = "
        f"**{floor:.3f}**. {per_class} samples per class, seeds {SEEDS[0]} and {SEEDS[1]} (mean).",
        "",
        table(["variant", "NFE", "FD mean", "× floor", "class agreement"],
              [[r["variant"], r["nfe"], f"{r['fd']:.3f}", f"{r['fd'] / floor:.2f}×", f"{100 * r['acc']:.1f} %"]
               for r in results]),
        "",
        f"Unconditional run (train.conditional=off): FD {uncond[35]:.3f} ({uncond[35] / floor:.2f}×) at 35 NFE, "
        f"{uncond[10]:.3f} ({uncond[10] / floor:.2f}×) at 10 NFE. The conditional run's unconditional samples (w = 0): "
        f"{plain[35] / uncond[35]:.2f}× and {plain[10] / uncond[10]:.2f}× those (goal ≤ {GOALS['uncond_ratio']}×).",
        f"Lowest FD at 35 NFE: {best['variant']}, {best['fd'] / floor:.2f}× the floor, {100 * best['acc']:.1f} % "
        "agreement. " + (f"Lowest FD among the settings with ≥ {100 * GOALS['accuracy']:.0f} % agreement: "
                         f"{chosen['variant']}, {chosen['fd'] / floor:.2f}×, {100 * chosen['acc']:.1f} %. "
                         if chosen else "No setting reaches 99 % agreement. ")
        + f"The default (sample.guidance = {default[0]:g}, sample.guidance_interval = {list(default[1])}) is chosen "
        "on a validation split by benchmarks/defaults.py, not here. "
        + ("No setting reaches FD ≤ 0.90× the floor." if best["fd"] > GOALS[35] * floor else
           "Settings at FD ≤ 0.90× the floor: " + ", ".join(
               f"{r['variant']} ({100 * r['acc']:.1f} %)" for r in results
               if r["nfe"] == 35 and r["fd"] <= GOALS[35] * floor) + "."),
        "",
        "The condition canary (guard.cond_min_gain, from guard.cond_after): cond_gain = relative rise of the fixed "
        "validation loss when each item gets another item's condition, at each validation (step: gain):",
        "",
        table(["run", "canary", "first fired at step", "cond_gain over training"], canaries),
        "",
        f"Training {fmt_s(train_s)}, evaluation {fmt_s(eval_s)}.",
    ]
    body = "\n".join(lines)
    print(body)
    (root / "results.json").write_text(json.dumps({"floor": floor, "results": results, "uncond": uncond_rows},
                                                  indent=1))
    if not args.quick:
        write_section("conditional", "Conditional digits: class agreement, FD and guidance (benchmarks/conditional.py)",
                      body)


SEED_VARIANTS = {"w 0": {"guidance": 0.0}, "default": {},
                 f"w 1.5, σ in {list(INTERVAL)}": {"guidance": 1.5, "interval": INTERVAL}}


def seed_figures(root: Path, base: dict, seed: int, ds, net, held_u, per_class: int, reuse: bool,
                 inpaint: bool = True) -> dict:
    """The goal figures of one training seed, cached in its folder (seed_results.json) after each of its two
    stages: the class-conditional figures, then the half-mask run's completions (skipped when not `inpaint`)."""
    where = root if seed == 0 else root / f"seed-{seed}"
    cache = where / "seed_results.json"
    out = json.loads(cache.read_text()) if reuse and cache.exists() else {"seed": seed, "train_s": 0.0, "eval_s": 0.0}
    where.mkdir(parents=True, exist_ok=True)
    train = {**base["train"], "seed": seed}
    if "variants" not in out:
        t0 = time.perf_counter()
        for name, extra in [("cond", {}), ("uncond", {"conditional": "off"})]:
            train_run({**base, "train": {**train, **extra}}, where / name, reuse=True)
        t1 = time.perf_counter()
        out.update(class_figures(where, net, held_u, per_class, seed))
        out["train_s"] += t1 - t0
        out["eval_s"] += time.perf_counter() - t1
        cache.write_text(json.dumps(out, indent=1))
    if inpaint and "inpaint" not in out:
        t0 = time.perf_counter()
        train_run({**base, "train": {**train, "conditional": "off", "masks": "half"}}, where / "masked-half",
                  reuse=True)
        t1 = time.perf_counter()
        out["inpaint"] = half_mask_figures(steadydiff.load(where / "masked-half"), ds, net)
        out["train_s"] += t1 - t0
        out["eval_s"] += time.perf_counter() - t1
        cache.write_text(json.dumps(out, indent=1))
    return out


def class_figures(where: Path, net, held_u, per_class: int, seed: int) -> dict:
    """Agreement and FD of the SEED_VARIANTS, and the unconditional run's FD (taken from the classes part's
    results.json where it scored the same runs)."""
    model, uncond = steadydiff.load(where / "cond"), steadydiff.load(where / "uncond")
    labels = np.repeat(np.arange(10), per_class)
    default_interval = tuple(model.config.sample.guidance_interval)
    out = {"variants": {}, "uncond": {}}
    shared = classes_results(where)
    for name, kw in SEED_VARIANTS.items():
        if shared and all((classes_name(name, model), str(model.nfe(k, s))) in shared for s, k in SETTINGS):
            out["variants"][name] = {str(model.nfe(k, s)): shared[(classes_name(name, model), str(model.nfe(k, s)))]
                                     for s, k in SETTINGS}
            continue
        model.config.sample.guidance_interval = kw.get("interval", default_interval)
        for sampler, k in SETTINGS:
            fds, accs = [], []
            for s in SEEDS:
                u = to_unit(model.sample(len(labels), cond=labels, guidance=kw.get("guidance"), steps=k,
                                         sampler=sampler, seed=s))
                fds.append(frechet_feature_distance(net, u, held_u))
                accs.append(float(np.mean(predict(net, u) == labels)))
            out["variants"].setdefault(name, {})[str(model.nfe(k, sampler))] = {
                "fd": float(np.mean(fds)), "acc": float(np.mean(accs)), "fds": fds}
            print(seed, name, sampler, out["variants"][name], flush=True)
        model.config.sample.guidance_interval = default_interval
    for sampler, k in SETTINGS:
        nfe = str(model.nfe(k, sampler))
        if shared and ("uncond", nfe) in shared:
            out["uncond"][nfe] = shared[("uncond", nfe)]["fd"]
            continue
        fds = [frechet_feature_distance(net, to_unit(uncond.sample(len(labels), steps=k, sampler=sampler, seed=s)),
                                        held_u) for s in SEEDS]
        out["uncond"][nfe] = float(np.mean(fds))
    return out


def half_mask_figures(half, ds, net) -> dict:
    """Class accuracy of a train.masks=half run's completions of the held-out digits' right halves: single draws
    (seeds 0 and 1), and the per-pixel median and mean of 8 draws."""
    x = right_half_unknown(ds)
    singles = [holdout_accuracy(net, ds, half.impute(x, seed=s, method="masked")) for s in SEEDS]
    draws = half.impute(x, draws=DRAWS, seed=0, method="masked")
    return {"single": float(np.mean(singles)), "median": holdout_accuracy(net, ds, np.median(draws, axis=0)),
            "mean": holdout_accuracy(net, ds, draws.mean(axis=0))}


def classes_results(where: Path) -> dict:
    """The classes part's figures of these runs (its results.json), by (variant, NFE): the same runs, sampling
    seeds and settings, so seed 0 need not sample them again."""
    path = where / "results.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    got = {(r["variant"], str(r["nfe"])): {"fd": r["fd"], "acc": r["acc"], "fds": list(r["fds"])}
           for r in saved["results"]}
    got.update({("uncond", str(r["nfe"])): {"fd": r["fd"]} for r in saved["uncond"]})
    return got


def classes_name(name: str, model) -> str:
    """A seeds-part variant's name in the classes part's results (the default is its guidance weight at every σ)."""
    if name == "default":
        g, (lo, hi) = model.config.sample.guidance, model.config.sample.guidance_interval
        return f"CFG w={g:g}" if lo == 0 and hi == float("inf") else ""
    if name == "w 0":
        return "CFG w=0"
    return f"CFG w=1.5, σ in [{INTERVAL[0]}, {INTERVAL[1]}]"


def seed_values(r: dict, floor: float) -> dict[str, float]:
    """One training seed's figures by name: shares (agreement, accuracy) and ratios."""
    v, interval = r["variants"], f"w 1.5, σ in {list(INTERVAL)}"
    out = {"agree35": v["default"]["35"]["acc"], "agree10": v["default"]["10"]["acc"],
           "fd35": v["default"]["35"]["fd"] / floor, "fd10": v["default"]["10"]["fd"] / floor,
           "int_fd": v[interval]["35"]["fd"] / floor, "int_agree": v[interval]["35"]["acc"],
           "w0_35": v["w 0"]["35"]["fd"] / r["uncond"]["35"], "w0_10": v["w 0"]["10"]["fd"] / r["uncond"]["10"],
           "unc35": r["uncond"]["35"] / floor, "unc10": r["uncond"]["10"] / floor}
    out.update({f"inpaint_{k}": r["inpaint"][k] for k in ("single", "median", "mean") if "inpaint" in r})
    return out


SEED_COLUMNS = [  # header, the seed_values keys it shows, and whether they are shares (%) or ratios (×)
    ("default: agreement 35 / 10 NFE", ("agree35", "agree10"), "%"),
    ("default: FD × floor 35 / 10", ("fd35", "fd10"), "×"),
    (f"w 1.5 in σ {list(INTERVAL)}: FD × floor / agreement (35)", ("int_fd", "int_agree"), "×%"),
    ("w 0 ÷ unconditional run 35 / 10", ("w0_35", "w0_10"), "×"),
    ("unconditional run FD × floor 35 / 10", ("unc35", "unc10"), "×"),
    ("half-mask run: single draw / median of 8 / mean of 8", ("inpaint_single", "inpaint_median", "inpaint_mean"),
     "%"),
]


def seed_cell(values: list[dict[str, float]], keys: tuple[str, ...], units: str) -> str:
    """One table cell: the values of one seed, or mean ± std over several ("—" where a seed lacks them)."""
    parts = []
    for i, key in enumerate(keys):
        got = np.array([v[key] for v in values if key in v])
        if len(got) < len(values) or len(got) == 0:
            return "—"
        unit = units[min(i, len(units) - 1)]
        scale, fmt, suffix = (100, ".1f", " %") if unit == "%" else (1, ".2f", "×")
        text = f"{scale * got.mean():{fmt}}"
        if len(values) > 1:
            text += f" ± {scale * got.std(ddof=1):{fmt}}"
        parts.append(text + suffix)
    return " / ".join(parts)


def seeds_part(args, root: Path, base: dict, ds, net, held_u, floor: float, per_class: int) -> None:
    figs = [seed_figures(root, base, s, ds, net, held_u, per_class, args.reuse, inpaint=not args.no_inpaint)
            for s in args.train_seeds]
    values = [seed_values(r, floor) for r in figs]
    rows = [[str(r["seed"]), *[seed_cell([v], keys, units) for _, keys, units in SEED_COLUMNS]]
            for r, v in zip(figs, values, strict=True)]
    with_inpaint = [v for v in values if "inpaint_single" in v]
    partial = f" ({len(with_inpaint)} seeds)" if 1 < len(with_inpaint) < len(values) else ""
    rows.append([f"mean ± std over {len(figs)}", *[
        seed_cell(with_inpaint, keys, units) + partial if keys[0].startswith("inpaint") else
        seed_cell(values, keys, units) for _, keys, units in SEED_COLUMNS]])
    knn = holdout_accuracy(net, ds, knn_completion(ds, right_half_unknown(ds)))
    body = "\n".join([
        f"The goal figures of the classes and inpaint parts for training seeds {', '.join(map(str, args.train_seeds))} "
        f"(each: a conditional, an unconditional and a train.masks=half run, 3,000 × 128, everything else default). "
        f"Floor FD {floor:.3f}; {per_class} samples per class; sampling seeds {SEEDS[0]} and {SEEDS[1]} (mean). "
        f"Default guidance: sample.guidance {cond_cfg_default()[0]:g} at every σ. Inpainting: the right half of each "
        f"held-out digit; KNNImputer (5 neighbours) {100 * knn:.1f} %.",
        "",
        table(["training seed", *[c[0] for c in SEED_COLUMNS]], rows),
        "",
        f"Training {fmt_s(sum(r['train_s'] for r in figs))}, evaluation {fmt_s(sum(r['eval_s'] for r in figs))} "
        "(summed over seeds; runs reused where finished). Each seed's figures are its seed_results.json, written by "
        "`--part seeds --train-seeds K` (seeds trained and scored in separate processes); seed 0's class figures are "
        "the classes part's results.json of the same runs.",
    ])
    print(body)
    if not args.quick and len(figs) > 1:
        write_section("conditional_seeds", "Conditional digits over training seeds (benchmarks/conditional.py --part "
                      "seeds)", body)


def cond_cfg_default() -> tuple[float, tuple[float, float]]:
    from steadydiff.sampling.config import SampleConfig

    d = SampleConfig()
    return d.guidance, tuple(d.guidance_interval)


def autoguided(model, guide_model, labels, w, sampler, k, seed) -> np.ndarray:
    """Samples guided by another model of the same run (autoguidance), through sampling.generate's `guide`."""
    from steadydiff.data.cond import model_conditions
    from steadydiff.sampling import generate

    c = torch.as_tensor(model_conditions(model.cond, labels))
    x = generate(model.denoiser, model.item_shape, len(labels), seed=seed,
                 **model.config.sampling(model.denoiser.sigma_data), steps=k, sampler=sampler, cond=c, guidance=w,
                 guide=guide_model.denoiser, device=model.device)
    return np.asarray(model.normaliser.inverse(x.numpy()), dtype=np.float32)


if __name__ == "__main__":
    main()
