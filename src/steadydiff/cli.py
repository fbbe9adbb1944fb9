"""The command line: `steadydiff train | sample | impute | forecast | edit | eval | report | info`, a thin layer over
the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .atomic import write_npy_atomic
from .config import RunConfig, apply_overrides, load_toml, set_value, to_dict, to_toml, validate
from .data.config import DataConfig
from .errors import SteadydiffError, TrainingStopped
from .metrics.reference import against_floor, own_error
from .report.live import N_EVAL
from .typed_config import diff


def _train_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config file < named flags < --set."""
    cfg = load_toml(args.config) if args.config else RunConfig()
    flags = {"data.source": args.data, "train.steps": args.steps, "train.batch_size": args.batch_size,
             "train.lr": args.lr, "train.seed": args.seed, "data.image_size": args.image_size}
    for key, value in flags.items():
        if value is not None:
            set_value(cfg, key, value)
    apply_overrides(cfg, [s for group in args.set for s in group])
    return validate(cfg)


def mark_derived(toml: str, derived: dict[str, tuple]) -> str:
    """The TOML text with '# derived (was X)' after each key whose value the data decided."""
    out, section = [], ""
    for line in toml.splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        elif " = " in line:
            key = f"{section}.{line.split(' = ')[0].strip()}" if section else line.split(" = ")[0].strip()
            if key in derived:
                before = derived[key][0]
                line += f"  # derived{'' if before is None else f' (was {before})'}"
        out.append(line)
    return "\n".join(out) + "\n"


def print_summary(s: dict) -> None:
    """summary.json in a few lines: the run, its quality against real data's floor, the guard's work."""
    q = s.get("quality", {})
    print(f"  {s['backbone']} with {s['parameters']:,} parameters; {s['steps']} steps, batch {s['batch_size']}, "
          f"{s['wall_s']:.0f} s; final loss {s['final_loss']:.4f}; fixed validation loss (EMA) "
          f"{s.get('val_loss_ema', float('nan')):.4f}")
    if "modes_covered" in q:
        print(f"  {q['n_samples']} samples: {q['modes_covered']}/{q['modes_total']} modes covered, "
              f"{100 * q['high_quality']:.1f}% within 3 std of a mode centre")
    real = q.get("real_data") or {}
    if q.get("metric") in q and q["metric"] != "high_quality":
        m = q["metric"]
        print(f"  {q['n_samples']} samples against the held-out data in {q['space']}: {m} {q[m]:.4g}, "
              f"{against_floor(m, q[m], real, own_error(q, m))[1]}")
        if m != "kid" and q.get("kid") is not None:
            print(f"  kid {q['kid']:.3g} ± {q['kid_se']:.2g}: {against_floor('kid', q['kid'], real, q['kid_se'])[1]}")
    if "unscored" in q:
        print(f"  not scored against held-out data: {q['unscored']}")
    if "column_shapes" in q:
        floor = real.get("column_shapes"), real.get("pair_trends")
        print(f"  column shapes {q['column_shapes']:.3f}, column-pair trends {q['pair_trends']:.3f} (1 = identical; "
              + (f"real training rows score {floor[0]:.3f} and {floor[1]:.3f}" if floor[0] is not None else
                 f"against the {q.get('table_scores_against', 'held-out rows')}") + ")")
    if "copy_fraction" in q:
        base = real.get("copy_fraction")
        print(f"  near-copies of training items: {100 * q['copy_fraction']:.1f}% of samples"
              + (f" (held-out real data: {100 * base:.1f}%)" if base is not None else ""))
    if s.get("skipped_files"):
        print(f"  {s['skipped_files']:,} unreadable data file(s) left out (data.bad_files=skip; see dataset.json)")
    st = s.get("stability")
    if st is not None:
        events = ", ".join(f"{k} {v}" for k, v in st["incidents"].items()) or "none"
        print(f"  stability guard: {events}; {st['skipped_steps']} steps skipped, {st['rollbacks']} rollbacks"
              + (f", LR now {st['lr_scale']:g}× the schedule" if st["lr_scale"] != 1 else "")
              + (" (incidents.jsonl)" if st["incidents"] else ""))


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)
    if args.image_size is not None and not Path(cfg.data.source).is_dir():
        raise SteadydiffError(f"--image-size resizes the images of a folder; data {cfg.data.source!r} is not a folder "
                              "of images (built-in images keep their own size, tables and arrays have none): leave "
                              "--image-size out")
    if args.nproc is not None and args.nproc < 1:
        raise SteadydiffError(f"--nproc {args.nproc}: give the number of processes to train with, 1 or more")
    if args.dry_run:
        from .data import describe
        from .nets import count_parameters
        from .train.loop import measure_step, plan

        resolved, ds, net = plan(cfg)
        derived = diff(cfg, resolved)
        print(f"# {describe(ds)}")
        for note in ds.notes:
            print(f"# data: {note}")
        cond = ds.condition(resolved.train.conditional)
        if cond is not None:
            print(f"# condition: {cond.describe()}")
        print(f"# backbone {type(net.backbone).__name__}: {count_parameters(net):,} parameters; nothing trained "
              "(--dry-run)")
        nproc = args.nproc or int(os.environ.get("WORLD_SIZE", "1"))
        m = measure_step(resolved, ds, net, processes=nproc)
        tc = resolved.train
        print(f"# one step measured here: {m['flops_per_sample'] / 1e6:,.1f} MFLOP per item (forward + backward), "
              f"{1000 * m['step_s']:,.1f} ms per step of {tc.batch_size // nproc} items"
              + (f" per process ({nproc} processes)" if nproc > 1 else "")
              + (f" with {m['threads']} thread(s)" if m["threads"] else "")
              + f", {m['samples_per_s']:,.0f} items/s, peak memory {m['peak_memory_mb']:,.0f} MB; "
              f"{tc.steps:,} steps ≈ {m['estimate_s'] / 60:,.1f} min of training (evaluation adds up to "
              f"{100 * tc.eval_budget:g} %)")
        if tc.ensemble > 1:
            from .train.ensemble import batching

            together = batching(resolved, tc.ensemble)
            print(f"# train.ensemble={tc.ensemble}: {tc.ensemble} such runs (seeds {tc.seed}–"
                  f"{tc.seed + tc.ensemble - 1}) trained "
                  + ("together, their network passes batched (train.ensemble_batched)" if together else
                     f"one after another, ≈ {tc.ensemble * m['estimate_s'] / 60:,.1f} min in all"))
        print("# every setting; '# derived' marks those resolved from the data when training starts")
        print(mark_derived(to_toml(resolved), derived), end="")
        return 0
    if args.nproc is not None and args.nproc > 1 and cfg.train.ensemble > 1:
        raise SteadydiffError("train.ensemble > 1 trains its members in one process; with --nproc it is not built: "
                              "train without --nproc, or each member as its own run (--seed S)")
    if args.nproc is not None and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from .train.distributed import launch

        return launch(args.nproc, without_nproc(args.argv))
    from .api import train

    run = train(cfg, out=args.out, progress=not args.quiet)
    if not run.summary:  # a distributed run's other processes: rank 0 reports
        return 0
    if "member_summaries" in run.summary:  # train.ensemble > 1
        print(f"trained an ensemble of {run.summary['ensemble']} runs on {run.summary['data']} "
              f"({run.summary['wall_s']:.0f} s in all)")
        for k, (d, member) in enumerate(zip(run.summary["members"], run.summary["member_summaries"], strict=True)):
            print(f"member {k} (train.seed={run.summary['seeds'][k]}, {d}):")
            print_summary(member)
        print(f"  ensemble directory: {run.dir} (ensemble.json; `steadydiff sample {run.dir}` draws from all members, "
              "`--ensemble mixture|mean`)")
        return 0
    print(f"trained {run.summary['data']}")
    print_summary(run.summary)
    print(f"  run directory: {run.dir} (samples in {run.dir / 'samples'}, summary.json)")
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The command line with --nproc N (or --nproc=N) taken out: what each process of `--nproc` runs."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _output_path(name: str, formats: tuple[str, ...] | None = None) -> Path:
    """--out of sample, impute, edit and forecast: a file of one of `formats` (default: .png, .npy or .csv),
    checked before any work."""
    from .data.export import FORMATS

    formats = formats or FORMATS
    out = Path(name)
    if out.suffix.lower() not in formats:
        listed = ", ".join(formats[:-1]) + " or " + formats[-1] if len(formats) > 1 else formats[0]
        raise SteadydiffError(f"--out {name!r}: use a name ending in {listed}")
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    from .api import Ensemble, load
    from .data.export import save_samples

    out = _output_path(args.out)
    if args.n < 1 or (args.steps is not None and args.steps < 1):
        raise SteadydiffError("--n and --steps must be ≥ 1")
    model = load(args.run, ema=not args.raw, checkpoint=args.checkpoint)
    members = len(model.members) if isinstance(model, Ensemble) else 0
    if members and args.guide is not None:
        raise SteadydiffError(f"--guide on an ensemble is not built; autoguide one member, e.g. "
                              f"`steadydiff sample {model_member(args.run)} --guide ...`")
    if not members and args.ensemble is not None:
        raise SteadydiffError(f"--ensemble: {args.run} holds a single run, not an ensemble (train.ensemble=K trains "
                              "one)")
    if args.uncertainty and not members and args.mc_dropout < 2:
        raise SteadydiffError("--uncertainty needs an ensemble (the members' spread) or --mc-dropout M ≥ 2 (the "
                              "passes' spread)")
    spread_wanted = args.mc_dropout > 1 or args.uncertainty
    guide = None
    if args.guide is not None:  # autoguidance by a weaker model of the same run
        guide = load(args.run, ema=False) if args.guide == "raw" else load(args.run, checkpoint=args.guide)
    # Unset options take the run's own sample settings (its config.toml), not a second set of defaults.
    sampler, steps = args.sampler or model.config.sample.sampler, args.steps or model.config.sample.steps
    n, cond = args.n, _cli_conditions(args, model)
    if args.cls == "all" and model.classes is not None:
        n = args.n * len(model.classes)
    if args.lowres is not None:
        path = Path(args.lowres)
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise SteadydiffError(f"--lowres {args.lowres!r}: give a .npy file of low-resolution images (N, C, h, w)")
        low = np.load(path, allow_pickle=False)
        n = len(low)
        x = model.upscale(low, steps=steps, sampler=sampler, seed=args.seed, cond=cond, guidance=args.guidance)
    else:
        seconds = model.seconds_for(n, steps=steps, sampler=sampler, ensemble=args.ensemble)
        if members and spread_wanted:
            seconds *= members if (args.ensemble or model.config.sample.ensemble) == "mixture" else 1
        if seconds > 60:
            print(f"{n} samples × {model.nfe(steps, sampler)} network evaluations: about {seconds / 60:.0f} min "
                  "here (Ctrl-C stops; fewer --n or --steps is quicker)", flush=True)
        batches = math.ceil(n / 500)
        if members and not spread_wanted and (args.ensemble or model.config.sample.ensemble) == "mixture":
            batches = members * math.ceil(n / members / 500)  # each member draws its own samples
        with tqdm(total=batches * steps, disable=args.quiet or seconds < 3, unit="step",
                  desc="sampling") as bar:
            x = model.sample(n, steps=steps, sampler=sampler, seed=args.seed, schedule=args.schedule, cond=cond,
                             guidance=args.guidance, guide=guide, callback=lambda info: bar.update(1),
                             mc_dropout=args.mc_dropout, uncertainty=spread_wanted, ensemble=args.ensemble)
        if members and spread_wanted:
            x, spread = x
            spread_path = out.with_name(out.stem + ".spread.npy")
            write_npy_atomic(spread_path, spread)
            print(f"ensemble of {members}: the members' spread of the denoised estimate along the path (normalised "
                  f"units, mean {float(spread.mean()):.4g}, max {float(spread.max()):.4g}) is in {spread_path}")
        elif args.mc_dropout > 1:
            from .sampling.mc_dropout import dropout_modules

            x, spread = x
            if not any(getattr(m, "p", 0) > 0 for m in dropout_modules(model.denoiser)):
                print("MC dropout: this network was trained without dropout (net.*.dropout = 0): every pass is the "
                      "same and the spread is 0", file=sys.stderr)
            spread_path = out.with_name(out.stem + ".spread.npy")
            write_npy_atomic(spread_path, spread)
            print(f"MC dropout: {args.mc_dropout} passes per step; the spread of the denoised estimate (normalised "
                  f"units, mean {float(spread.mean()):.4g}, max {float(spread.max()):.4g}) is in {spread_path}")
    what = "" if model.cond is None else (
        f", guidance {model.config.sample.guidance if args.guidance is None else args.guidance:g}, "
        + (f"class {args.cls}" if args.cls not in (None, "all") else f"{args.n} per class" if args.cls == "all"
           else f"conditions from {args.cond}" if args.cond else f"prompt {args.prompt!r}" if args.prompt
           else "conditions drawn like the training items'"))
    save_samples(out, x, kind=model.kind, value_range=model.normaliser.value_range, columns=model.columns,
                 title=f"{n} samples, {sampler}, {model.nfe(steps, sampler)} NFE{what}", table=model.normaliser.table)
    if members:
        what += f"; ensemble of {members} runs, {args.ensemble or model.config.sample.ensemble} sampling"
    print(f"wrote {n} samples to {out} ({sampler}, {steps} steps = "
          f"{model.nfe(steps, sampler)} network evaluations per sample, "
          f"{'raw' if args.raw else 'EMA'} weights of step {model.step}{what})")
    return 0


def model_member(run: str | Path) -> Path:
    """The first member's directory of an ensemble (what a verb that reads one run is given instead)."""
    from .train.ensemble import member_dirs, read_ensemble

    return member_dirs(run, read_ensemble(run))[0]


def ensemble_choice(args: argparse.Namespace, model: Any) -> str | None:
    """--ensemble, refused for a single run."""
    from .api import Ensemble

    if args.ensemble is not None and not isinstance(model, Ensemble):
        raise SteadydiffError(f"--ensemble: {args.run} holds a single run, not an ensemble")
    return args.ensemble


def _cli_conditions(args: argparse.Namespace, model) -> object:
    """What `sample --class/--cond` ask for, checked against the run (errors name what it expects)."""
    from .data.cond import parse_conditions

    given = [flag for flag, v in (("--class", args.cls), ("--cond", args.cond), ("--prompt", args.prompt))
             if v is not None]
    if len(given) > 1:
        raise SteadydiffError(f"give one of --class, --cond and --prompt, not {' and '.join(given)}")
    if (given or args.guidance is not None) and model.cond is None:
        parse_conditions(None, None, args.n)  # raises: the run is unconditional
    how = {"class": "--class NAME", "vector": "--cond FILE.npy", "text": '--prompt "TEXT"'}
    if args.prompt is not None:
        if model.cond.kind != "text":
            raise SteadydiffError(f"--prompt needs a run conditional on captions; this one is "
                                  f"{model.cond.describe()}: use {how[model.cond.kind]}")
        return args.prompt
    if args.cls == "all":
        if model.classes is None:
            raise SteadydiffError(f"--class all needs a class-conditional run; this one is "
                                  f"{model.cond.describe()}: use {how[model.cond.kind]}")
        return np.repeat(np.arange(len(model.classes)), args.n)
    if args.cls is not None:
        if model.classes is None:
            raise SteadydiffError(f"--class needs a class-conditional run; this one is {model.cond.describe()}: "
                                  f"use {how[model.cond.kind]}")
        return args.cls if args.cls in model.classes or not args.cls.lstrip("-").isdigit() else int(args.cls)
    if args.cond is not None:
        path = Path(args.cond)
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise SteadydiffError(f"--cond {args.cond!r}: give a .npy file of conditions (one per sample: class ids "
                                  f"(N,), or vectors (N, K))")
        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise SteadydiffError(f"--cond {args.cond}: cannot read it without unpickling ({e}); save a numeric "
                                  "array with np.save") from None
        if len(values) != args.n:
            raise SteadydiffError(f"--cond {args.cond}: {len(values)} conditions for --n {args.n}; give one per sample")
        return values
    return None


def cmd_impute(args: argparse.Namespace) -> int:
    from .api import load
    from .data.export import save_samples
    from .data.incomplete import read_incomplete

    out = _output_path(args.out)
    model = load(args.run, ema=not args.raw, checkpoint=args.checkpoint)
    table = model.normaliser.table
    x = read_incomplete(args.input, model.item_shape, mask=args.mask, columns=model.columns,
                        value_range=model.normaliser.value_range, table=table)
    unknown = int(np.isnan(x).sum() if table is None else table.missing_cells(x).sum())
    done = model.impute(x, draws=args.draws, seed=args.seed, steps=args.steps, resample=args.resample,
                        method=args.method, ensemble=ensemble_choice(args, model), known_guidance=args.known_guidance)
    if args.draws == 1:
        best = done
    else:  # per value (a table's categories: the commonest); known values are equal in every draw
        best = np.median(done, axis=0) if table is None else table.consensus(done).astype(np.float32)
    best = np.where(np.isnan(x), best, x)
    save_samples(out, best, kind=model.kind, value_range=model.normaliser.value_range, columns=model.columns,
                 title=f"{len(x)} completions", table=table)
    extra = ""
    if args.draws > 1:
        draws_path = out.with_name(out.stem + "-draws.npy")
        np.save(draws_path, done)
        extra = f"; the per-value median of {args.draws} draws (all of them in {draws_path}, shaped {done.shape})"
    print(f"filled {unknown:,} unknown values of {len(x):,} items into {out}{extra}; known values unchanged")
    return 0


FORECAST_QUANTILES = (0.05, 0.5, 0.95)


def cmd_forecast(args: argparse.Namespace) -> int:
    from .api import load
    from .atomic import atomic_path, write_npy_atomic
    from .data.export import forecast_png
    from .data.sources import is_csv, read_csv

    out = _output_path(args.out, (".csv",))
    model = load(args.run, ema=not args.raw, checkpoint=args.checkpoint)
    path = Path(args.input)
    if not path.is_file():
        raise SteadydiffError(f"--in {args.input!r}: no such file; give the history as a CSV (rows = time steps, a "
                              "column per channel) or a .npy of shape (steps,) or (steps, channels)")
    history = read_csv(path, codes=False).x if is_csv(path) else np.load(path, allow_pickle=False)
    paths = model.forecast(history, args.horizon, draws=args.draws, seed=args.seed, steps=args.steps,
                           resample=args.resample, ensemble=ensemble_choice(args, model))
    names = model.columns or [f"channel{c}" for c in range(paths.shape[1])]
    q = np.quantile(paths, FORECAST_QUANTILES, axis=0)  # (quantiles, channels, horizon)
    header = ["step"] + [f"{n}_q{round(100 * p):02d}" for n in names for p in FORECAST_QUANTILES]
    rows = [[str(t + 1)] + [f"{q[k, c, t]:.6g}" for c in range(len(names)) for k in range(len(FORECAST_QUANTILES))]
            for t in range(args.horizon)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    draws_path = out.with_name(out.stem + "-draws.npy")
    write_npy_atomic(draws_path, paths)
    fan = out.with_suffix(".png")
    h = np.asarray(history, dtype=np.float64)
    with atomic_path(fan) as tmp:
        forecast_png(tmp, h[:, None] if h.ndim == 1 else h, paths, names,
                     f"{args.draws} sample paths of the next {args.horizon} steps ({Path(args.run).name})")
    print(f"forecast {args.horizon} steps of {len(names)} channel(s), {args.draws} sample paths: quantiles "
          f"{', '.join(f'{p:g}' for p in FORECAST_QUANTILES)} in {out}, every path in {draws_path} "
          f"(shaped {paths.shape}), a fan chart in {fan}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from .api import load
    from .data.export import save_samples
    from .data.incomplete import read_incomplete

    out = _output_path(args.out)
    model = load(args.run, ema=not args.raw, checkpoint=args.checkpoint)
    x = read_incomplete(args.input, model.item_shape, columns=model.columns, value_range=model.normaliser.value_range,
                        image_needs_mask=False, table=model.normaliser.table)
    args.n, args.cond = len(x), None
    cond = _cli_conditions(args, model)
    done = model.edit(x, args.strength, seed=args.seed, steps=args.steps, cond=cond, guidance=args.guidance)
    save_samples(out, done, kind=model.kind, value_range=model.normaliser.value_range, columns=model.columns,
                 title=f"{len(x)} edits, strength {args.strength:g}", table=model.normaliser.table)
    print(f"wrote {len(x):,} edited items to {out} (strength {args.strength:g})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .data.cond import CondSpec
    from .data.table import Table
    from .train.checkpoint import list_checkpoints
    from .train.ensemble import read_ensemble

    run = Path(args.run)
    if read_ensemble(run) is not None:
        return ensemble_info(run, args)
    if not (run / "config.toml").is_file():
        raise SteadydiffError(f"{run} is not a steadydiff run directory (no config.toml)")
    cfg = load_toml(run / "config.toml")

    def read(name: str) -> Any:
        path = run / name
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except json.JSONDecodeError as exc:
            return {"unreadable": f"{path}: {exc}"}

    info, summary = read("dataset.json") or {}, read("summary.json")
    ckpts = [p.name for p in list_checkpoints(run / "checkpoints")]
    last = None
    if (run / "metrics.jsonl").exists():
        for ln in reversed((run / "metrics.jsonl").read_text().splitlines()):
            try:
                last = json.loads(ln)
                break
            except json.JSONDecodeError:  # a line torn by a kill mid-write
                continue
    if args.json:
        print(json.dumps({"run": str(run), "config": to_dict(cfg), "dataset": info, "checkpoints": ckpts,
                          "last_logged": last, "summary": summary}, indent=1))
        return 0
    print(f"run {run}")
    print(f"  data: {info.get('description', cfg.data.source)}")
    saved = read("normaliser.json") or {}
    table = Table.from_dict(saved["table"]) if saved.get("table") else None
    if table is not None:  # a CSV or parquet table's column types
        print(f"  column types: {table.describe()}" + (f"; the network sees {table.width} values per row (a one-hot "
                                                       "or bit block per categorical column)"
                                                       if table.width != len(table.columns) else ""))
    for note in saved.get("notes") or []:  # column kinds: log, codes, whole numbers
        print(f"  columns: {note}")
    if info.get("missing"):
        missing = info["missing"] if table is None else \
            {c.name: info["missing"].get(c.entries()[0], 0.0) for c in table.columns}  # per column, not per entry
        shares = sorted(missing.items(), key=lambda kv: -kv[1])
        print("  missing values (share of training entries): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in
                                                                         shares[:8])
              + (f" and {len(shares) - 8} more" if len(shares) > 8 else "") + f"; train.masks={cfg.train.masks}")
    if info.get("condition"):
        print(f"  condition: {CondSpec.from_dict(info['condition']).describe()}; cond_dropout "
              f"{cfg.train.cond_dropout}, guidance {cfg.sample.guidance:g}")
    print(f"  net: {cfg.net.kind}; parameterisation {cfg.diffusion.parameterization}, "
          f"σ_data {cfg.diffusion.sigma_data}")
    print(f"  train: {cfg.train.steps} steps, batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
          f"{cfg.train.optimizer}, {cfg.train.lr_schedule}")
    print(f"  checkpoints: {', '.join(ckpts) or 'none'}")
    if last is not None:
        print(f"  last logged step {last['step']}: loss {last['loss']:.4f}, lr {last['lr']:.3g}, "
              f"{last['samples_per_s']:.0f} samples/s")
    if summary is None:
        print("  no summary.json yet: the run has not finished")
    elif "unreadable" in summary:
        print(f"  summary.json could not be read: {summary['unreadable']}")
    else:
        print("summary (summary.json; `steadydiff info --json` for every field):")
        print_summary(summary)
    return 0


def ensemble_info(run: Path, args: argparse.Namespace) -> int:
    """`info` of an ensemble directory: its members, each described as the run it is."""
    from .train.ensemble import member_dirs, read_ensemble

    info = read_ensemble(run)
    dirs = member_dirs(run, info)
    if args.json:
        members = []
        for m, d in zip(info["members"], dirs, strict=True):
            summary = d / "summary.json"
            members.append({**m, "path": str(d),
                            "summary": json.loads(summary.read_text()) if summary.is_file() else None})
        print(json.dumps({"run": str(run), "ensemble": info, "members": members}, indent=1))
        return 0
    done = sum(bool(m["finished"]) for m in info["members"])
    print(f"ensemble {run}: {len(dirs)} members (train.ensemble={info['ensemble']}, seeds {info['members'][0]['seed']}"
          f"–{info['members'][-1]['seed']}), {done} finished; trained one after another, each a run directory of "
          "its own (`steadydiff info MEMBER` for one); `steadydiff sample` draws from all (--ensemble mixture|mean)")
    for m, d in zip(info["members"], dirs, strict=True):
        summary = d / "summary.json"
        if m["finished"] and summary.is_file():
            print(f"member {d.name} (train.seed={m['seed']}, {d}):")
            print_summary(json.loads(summary.read_text()))
        else:
            started = (d / "config.toml").is_file()
            print(f"member {d.name} (train.seed={m['seed']}, {d}): {'unfinished' if started else 'not started'}")
    return 0


REPORT_EVAL_S = 40  # the longest `report` spends drawing eval.json's table itself (more: it says how to get it)
FULL_TABLE = (("heun", "dpmpp-2m", "euler"), (10, 20, 35))  # `steadydiff eval`'s default settings


def report_plans(own_sampler: str) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """The tables `report` may draw itself, largest first: every solver at 10/20/35 NFE, then the run's own
    solver at the three budgets, then at 10 NFE alone."""
    return [FULL_TABLE, ((own_sampler,), (10, 20, 35)), ((own_sampler,), (10,))]


def ensure_evaluated(run: Path, n: int, force: bool = False) -> str | None:
    """Quality against NFE for the newest checkpoint, by `steadydiff eval`, unless eval.json has it already:
    the report shows eval.json's figures and computes none of its own. The largest table of `report_plans` whose
    samples take at most REPORT_EVAL_S here is drawn (all of them with `force`); when none fits, or the run cannot
    be scored (no checkpoint yet, data not reloadable, too few held-out items), returns why, for the report to
    say."""
    from . import evaluate as ev
    from .api import load
    from .train.checkpoint import list_checkpoints

    latest = list_checkpoints(run / "checkpoints")
    if not latest:
        return None
    try:
        done = json.loads((run / "eval.json").read_text()).get("quality_vs_nfe", {}).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        done = None
    if done == latest[-1].name:
        return None
    try:
        samplers, targets = FULL_TABLE
        if not force:
            model = load(run)
            per_nfe = model.seconds_for(n, steps=1, sampler="euler")

            def cost(plan: tuple[tuple[str, ...], tuple[int, ...]]) -> float:
                settings = {(s, ev.steps_for_nfe(s, t)) for s in plan[0] for t in plan[1]}
                return per_nfe * sum(model.nfe(k, s) for s, k in settings)

            plans = report_plans(model.config.sample.sampler)
            fits = [p for p in plans if cost(p) <= REPORT_EVAL_S]
            if not fits:
                seconds = cost(plans[-1])
                about = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
                note = (f"even its smallest table ({plans[-1][0][0]} at {plans[-1][1][0]} NFE, {n} samples) would "
                        f"take about {about} here: `steadydiff eval {run}` (or `steadydiff report {run} --eval`) "
                        "adds the table")
                print(f"not scoring {latest[-1].name} first: {note}")
                return note
            samplers, targets = fits[0]
            if fits[0] != FULL_TABLE:
                print(f"the full table would take about {cost(FULL_TABLE):.0f} s here: scoring {', '.join(samplers)} "
                      f"only (`steadydiff eval {run}` adds the rest)")
        print(f"scoring {latest[-1].name} with {', '.join(samplers)} at "
              f"{', '.join(map(str, targets))} network evaluations first (steadydiff eval, eval.json)")
        ev.evaluate(run, n=n, samplers=samplers, nfe=targets, progress=True)
    except SteadydiffError as exc:
        print(f"  not scored: {exc}")
        return f"it could not be scored ({exc})"
    return None


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from .report import write_report
    from .train.ensemble import refuse_ensemble

    refuse_ensemble(args.run, "report")
    if args.samples < 10:
        raise SteadydiffError(f"--samples must be ≥ 10, got {args.samples}")
    t = time.perf_counter()
    note = ensure_evaluated(Path(args.run), args.samples, force=args.eval)
    path = write_report(args.run, args.out, n_eval=args.samples, eval_note=note)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t:.1f} s); "
          "open it in any browser, no network needed")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SteadydiffError(f"--nfe {text!r}: give whole numbers separated by commas, e.g. --nfe 10,20,35") from None


def _metric_text(metrics: dict, real: dict | None = None) -> str:
    """The metrics of one sample set (or of real data) on one line, each distance with its noise (the floor's
    spread over draws, KID's standard error); against `real` (the floor at the same number of items), a
    distance at the floor within that noise, or below it beyond (which no model can do), says so."""
    keys = [k for k in ("discriminative", "predictive", "fd_classifier", "fd_trained", "fd_inception", "fd_user",
                        "fd_data", "kid", "acf_distance", "spectrum_distance", "column_shapes", "pair_trends",
                        "modes_covered", "high_quality",
                        "precision", "recall", "class_tv", "copy_fraction")
            if metrics.get(k) is not None]

    def text(k: str) -> str:
        v = metrics[k]
        out = f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        noise = metrics.get("kid_se") if k == "kid" else metrics.get(f"{k}_sd")
        out += f" ± {noise:.2g}" if isinstance(noise, float) else ""
        mean_term = metrics.get(f"{k}_mean_term")  # the FD's ||μ − μ_held||² part (evaluate's docstring)
        out += f" (mean term {mean_term:.3g})" if isinstance(mean_term, float) else ""
        if real is not None and (k == "kid" or k.startswith("fd_") or f"{k}_sd" in real):
            where, _ = against_floor(k, v, real, own_error(metrics, k))
            out += {"at": " [at the floor]", "below": " [below the floor: misleading here]"}.get(where, "")
        return out

    return "  ".join(text(k) for k in keys) or json.dumps(metrics)


def cmd_eval(args: argparse.Namespace) -> int:
    from . import evaluate as ev
    from .train.ensemble import refuse_ensemble

    refuse_ensemble(args.run, "eval")

    samplers = [s for s in args.samplers.split(",") if s.strip()]
    nfe = _int_list(args.nfe)
    if args.ema_sweep:
        res = ev.ema_sweep(args.run, metric=args.metric, n=args.n, seed=args.seed, features=args.features,
                           progress=not args.quiet)
        print(f"post-hoc EMA sweep ({res['snapshots']} snapshots, {res['sampler']} {res['steps']} steps = "
              f"{res['nfe']} NFE, {res['n_samples']} samples):")
        for row in res["rows"]:
            print(f"  σ_rel {row['std']:.3f}: {_metric_text(row['metrics'], res.get('real_data'))}")
        b = res["best"]
        print(f"  best: σ_rel {b['std']:.3f} ({b['metric']} {b['value']:.4g})")
    if args.best:
        res = ev.best_checkpoint(args.run, args.metric, n=args.n, seed=args.seed, features=args.features,
                                 progress=not args.quiet)
        print(f"best checkpoint by {res['metric']}: {res['checkpoint']} ({res['value']:.4g}); "
              + ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} —" for k, v in res["all"].items()))
        print(f"  load it with steadydiff.load(RUN, checkpoint='best') or `steadydiff sample {args.run} "
              "--checkpoint best ...`")
    if args.nll:
        res = ev.likelihood(args.run, checkpoint=args.checkpoint, ema=not args.raw, n=args.n or 500, seed=args.seed,
                            steps=args.nll_steps, probes=args.nll_probes, progress=not args.quiet)
        print(f"negative log-likelihood ({res['unit']}; probability-flow ODE, {res['steps']} Heun steps, "
              f"{res['divergence']} divergence), {res['checkpoint']}, {res['weights']} weights:")
        for split in ("train", "holdout"):
            if split in res:
                r = res[split]
                print(f"  {'training' if split == 'train' else 'held-out'} items ({r['n']}): {r['mean']:.4f} ± "
                      f"{r['se']:.4f}")
        if "gap" in res:
            print(f"  held-out − training: {res['gap']['value']:+.4f} ± {res['gap']['se']:.4f}: "
                  f"{res['gap']['reading']}")
        print(f"  {res['seconds_per_1000_items']:.0f} s per 1,000 items")
    if not (args.best or args.ema_sweep or args.nll) or args.table:
        res = ev.evaluate(args.run, checkpoint=args.checkpoint, samplers=samplers, nfe=nfe, n=args.n, seed=args.seed,
                          ema=not args.raw, features=args.features, gru_scores=args.gru_scores,
                          progress=not args.quiet)
        print(f"quality against network evaluations: {res['checkpoint']}, {res['weights']} weights, "
              f"{res['n_samples']} samples, seed {res['seed']}; scored in {res['data']['space']}")
        for note in res["data"].get("notes") or []:
            print(f"  note: {note}")
        print(f"  real data (the floor): {_metric_text(res['real_data'])}")
        for row in res["table"]:
            print(f"  {row['solver']:<9} {row['steps']:>3} steps {row['nfe']:>3} NFE  "
                  f"{_metric_text(row['metrics'], res['real_data'])}")
    print(f"  written to {Path(args.run) / 'eval.json'}")
    return 0


class _Help(argparse.HelpFormatter):
    """Each option's help ends with its default where it has one and does not state it itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not (default is None or default is False or default == [] or default == argparse.SUPPRESS) and \
                "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _weights_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint and --raw: which weights of the run a verb reads."""
    p.add_argument("--checkpoint", default="last", help="last (the newest intact one), best or step-N")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steadydiff", description="Train diffusion models on your own data.",
                                formatter_class=_Help)
    sub = p.add_subparsers(dest="command", required=True)
    tc = RunConfig().train

    def parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=_Help, **kw)

    t = parser("train", help="train a model (or resume the run in --out)")
    t.add_argument("--data", help="built-in name (toy:grid25, toy:ring8, toy:swissroll, digits, mnist, iris, "
                                  "wine) or a path: image folder, .npy/.npz, .csv (data.source; default: "
                                  f"--config's, else {DataConfig().source})")
    t.add_argument("--out", required=True, help="run directory; an existing run there is resumed")
    t.add_argument("--steps", type=int, help=f"training steps (train.steps; default {tc.steps})")
    t.add_argument("--batch-size", type=int, help=f"items per step (train.batch_size; default {tc.batch_size})")
    t.add_argument("--lr", type=float, help=f"peak learning rate (train.lr; default {tc.lr:g})")
    t.add_argument("--seed", type=int, help=f"seed of the weights, data order and noise (train.seed; default "
                                            f"{tc.seed})")
    t.add_argument("--image-size", type=int, help="side in pixels that the images of a folder are resized to "
                                                  f"(data.image_size; default {DataConfig().image_size}); "
                                                  "folders only")
    t.add_argument("--config", help="TOML file with config values (default: none; the built-in defaults)")
    t.add_argument("--set", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config value, e.g. --set net.unet.channels=32 train.ema_halflife_samples=1e5 "
                        "(default: none)")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and model size, train nothing")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--nproc", type=int, default=None,
                   help="train with N processes on this machine (torchrun and DistributedDataParallel: gloo on CPU, "
                        "NCCL on GPUs); --batch-size stays the global batch (default: 1 process; for several "
                        "machines run `torchrun ... -m steadydiff train ...` yourself)")
    t.set_defaults(func=cmd_train)

    s = parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run directory")
    s.add_argument("--n", type=int, default=64, help="samples to draw")
    s.add_argument("--steps", type=int, default=None,
                   help="solver steps (heun uses 2·steps−1 evaluations); default: the run's sample.steps")
    s.add_argument("--sampler", default=None, choices=["euler", "heun", "ddim", "ancestral", "dpmpp-2m"],
                   help="default: the run's sample.sampler")
    s.add_argument("--schedule", default=None, choices=["karras", "vp-uniform", "vp-linear", "vp-cosine"],
                   help="step list; vp-uniform: uniform in the VP time of the schedule the run trained with "
                        "(default: the run's sample.schedule)")
    s.add_argument("--seed", type=int, default=0, help="sample i depends on (seed, i) alone, whatever --n")
    s.add_argument("--out", required=True,
                   help="FILE.png (grid or scatter), FILE.npy, FILE.csv or FILE.parquet (tables)")
    _weights_args(s)
    s.add_argument("--class", dest="cls", default=None, metavar="NAME|ID|all",
                   help="class-conditional runs: the class of every sample (name or id), or 'all': --n per class "
                        "(default: classes drawn in the training data's proportions)")
    s.add_argument("--cond", default=None, metavar="FILE.npy",
                   help="conditional runs: one condition per sample (class ids (N,) or vectors (N, K)); default: drawn "
                        "from the training conditions")
    s.add_argument("--prompt", default=None, metavar="TEXT",
                   help="runs conditional on captions: the caption every sample is drawn for (default: training "
                        "captions, drawn per sample)")
    s.add_argument("--mc-dropout", type=int, default=0, metavar="M",
                   help="Monte Carlo dropout: M passes per step with dropout on, their mean used; with M ≥ 2 the "
                        "spread of the estimate is written beside --out as NAME.spread.npy (networks trained with "
                        "dropout only; default 0: off)")
    s.add_argument("--ensemble", default=None, choices=["mixture", "mean"],
                   help="ensembles (train.ensemble): mixture: each sample from one member, chosen by its seed; mean: "
                        "the members' denoisers averaged at every step (K× the cost); default: the run's "
                        "sample.ensemble")
    s.add_argument("--uncertainty", action="store_true",
                   help="ensembles: also write the members' spread of the denoised estimate along the path beside "
                        "--out as NAME.spread.npy (every member evaluated at every step: K× the cost of a mixture); "
                        "implied by --mc-dropout M ≥ 2")
    s.add_argument("--guide", default=None, metavar="raw|step-N",
                   help="autoguidance: guide by the raw weights or an earlier checkpoint's EMA instead of the "
                        "unconditional branch (with --guidance W; default: the unconditional branch)")
    s.add_argument("--lowres", default=None, metavar="FILE.npy",
                   help="super-resolution runs (train.lowres): the low-resolution images to upsample, one per sample "
                        "(required there; default: none)")
    s.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight (1: plain conditional, 0: unconditional; default: the "
                        "run's sample.guidance)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample)

    i = parser("info", help="describe a run directory")
    i.add_argument("run", help="run directory")
    i.add_argument("--json", action="store_true", help="everything as one JSON object, for programs")

    m = parser("impute", help="fill the unknown values (NaN, empty CSV cells, a mask's white pixels)")
    m.add_argument("run", help="run directory")
    m.add_argument("--in", dest="input", required=True, help="FILE.npy/.npz/.csv/.parquet with NaN (or empty "
                   "cells), or an image with --mask")
    m.add_argument("--mask", default=None, help="with an image: MASK.png, white where pixels are unknown "
                                                "(default: none; arrays and tables mark unknown values as NaN)")
    m.add_argument("--out", required=True, help="FILE.npy, FILE.csv, FILE.parquet or FILE.png (the "
                   "completions)")
    m.add_argument("--draws", type=int, default=1, help="completions per item; >1 writes their median and all draws")
    m.add_argument("--resample", type=int, default=5,
                   help="RePaint resampling: each Heun step taken this many times (1: plain replacement)")
    m.add_argument("--method", default="auto", choices=["auto", "replace", "masked"],
                   help="replace: training-free; masked: a run trained with train.masks; auto: masked where possible")
    m.add_argument("--known-guidance", type=float, default=1.0, metavar="W",
                   help="masked method: guide by the known values with weight W, the empty mask as the "
                        "unconditional branch (1: plain; >1 sharper completions at two passes per step)")
    m.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's sample.steps)")
    m.add_argument("--seed", type=int, default=0, help="draw k of item i depends on (seed, k, i) alone")
    m.add_argument("--ensemble", default=None, choices=["mixture", "mean"],
                   help="ensembles: mixture (each draw from one member) or mean (default: the run's sample.ensemble)")
    _weights_args(m)
    m.set_defaults(func=cmd_impute)

    f = parser("forecast", help="sample paths of a series run's next steps, and their quantiles")
    f.add_argument("run", help="run directory")
    f.add_argument("--in", dest="input", required=True,
                   help="the history: a CSV (rows = time steps, a column per channel) or .npy (steps[, channels])")
    f.add_argument("--horizon", type=int, required=True, help="steps to forecast (fewer than the run's window)")
    f.add_argument("--draws", type=int, default=100, help="sample paths")
    f.add_argument("--out", required=True, help="FILE.csv of the quantiles per step and channel (and FILE-draws.npy)")
    f.add_argument("--resample", type=int, default=5,
                   help="RePaint resampling for runs trained without masks (1: plain replacement)")
    f.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's sample.steps)")
    f.add_argument("--seed", type=int, default=0, help="path k depends on (seed, k) alone")
    f.add_argument("--ensemble", default=None, choices=["mixture", "mean"],
                   help="ensembles: mixture (each path from one member) or mean (default: the run's sample.ensemble)")
    _weights_args(f)
    f.set_defaults(func=cmd_forecast)

    d = parser("edit", help="SDEdit: noise items part of the way and denoise them (optionally to a class)")
    d.add_argument("run", help="run directory")
    d.add_argument("--in", dest="input", required=True, help="FILE.npy/.npz/.csv of items, or an image")
    d.add_argument("--strength", type=float, required=True, help="in (0, 1]: 0 keeps the input, 1 ignores it")
    d.add_argument("--out", required=True, help="FILE.npy, FILE.csv or FILE.png")
    d.add_argument("--class", dest="cls", default=None, metavar="NAME|ID",
                   help="class-conditional runs: edit towards (default: the null condition)")
    d.add_argument("--prompt", default=None, metavar="TEXT",
                   help="caption-conditional runs: edit towards (default: the null condition)")
    d.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight (default: the run's sample.guidance)")
    d.add_argument("--steps", type=int, default=None, help="steps of the full step list (default: the run's)")
    d.add_argument("--seed", type=int, default=0, help="item i's noise depends on (seed, i) alone")
    _weights_args(d)
    d.set_defaults(func=cmd_edit)
    i.set_defaults(func=cmd_info)

    e = parser("eval", help="quality against network evaluations per solver; best checkpoint; EMA sweep")
    e.add_argument("run", help="run directory")
    e.add_argument("--checkpoint", default="last", help="last, best or step-N")
    e.add_argument("--samplers", default="heun,dpmpp-2m,euler", help="comma-separated solvers")
    e.add_argument("--nfe", default="10,20,35", help="comma-separated network-evaluation budgets")
    e.add_argument("--n", type=int, default=None, help="samples per setting (default min(1500, max(500, held-out)))")
    e.add_argument("--seed", type=int, default=0, help="seed of the samples scored")
    e.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA")
    e.add_argument("--best", action="store_true", help="score every kept checkpoint and record the best")
    e.add_argument("--metric", default=None,
                   help="metric for --best and --ema-sweep (default: the FD of --features where given, else per "
                        "data kind)")
    e.add_argument("--features", default=None, metavar="classifier|trained|inception|data|MODULE:ATTR",
                   help="feature space of FD, KID, MMD and precision/recall (default: a shipped digit classifier "
                        "for grey images within 2× of 8 or 28 px, else for images a CNN trained on the run's own "
                        "training split, else data). inception: FID's Inception-v3 (pip install "
                        "'steadydiff[fid]'; slow on a CPU); MODULE:ATTR: your function or nn.Module, "
                        "imported from the Python path (PYTHONPATH)")
    e.add_argument("--gru-scores", action="store_true",
                   help="series: also TimeGAN's discriminative and predictive scores (two small GRUs trained for each "
                        "setting and for the floor, about two minutes each on a CPU core: pick one setting, e.g. "
                        "--samplers heun --nfe 35)")
    e.add_argument("--ema-sweep", action="store_true", help="post-hoc EMA: quality against EMA length (σ_rel)")
    e.add_argument("--table", action="store_true",
                   help="with --best, --ema-sweep or --nll, also the quality-vs-NFE table")
    e.add_argument("--nll", action="store_true",
                   help="negative log-likelihood of --n (default 500) training and held-out items through the "
                        "probability-flow ODE: bits/dim for images, nats per item otherwise; the gap is a "
                        "memorisation signal")
    e.add_argument("--nll-steps", type=int, default=128,
                   help="Heun steps of the likelihood ODE (2 network evaluations each; the error falls as 1/steps²)")
    e.add_argument("--nll-probes", type=int, default=None,
                   help="Hutchinson probes per item (0: exact divergence; default: exact up to 16 values per item, "
                        "else 4)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    r = parser("report", help="write a self-contained HTML report of a run (also while it trains)")
    r.add_argument("run", help="run directory")
    r.add_argument("--out", help="HTML file to write (default RUN/report.html)")
    r.add_argument("--samples", type=int, default=N_EVAL,
                   help="samples per setting of the quality-vs-NFE table and the memorisation check (each distance "
                        "is read against real data's floor at the same number of items)")
    r.add_argument("--eval", action="store_true",
                   help=f"draw eval.json's quality-vs-NFE table first even when it takes longer than "
                        f"{REPORT_EVAL_S} s here")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("steadydiff: %(message)s"))
    logger = logging.getLogger("steadydiff")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return args.func(args)
    except TrainingStopped as exc:
        print(f"steadydiff: training stopped: {exc}", file=sys.stderr)
        return 3
    except SteadydiffError as exc:
        print(f"steadydiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("steadydiff: interrupted; re-run the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
