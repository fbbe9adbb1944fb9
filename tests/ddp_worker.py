"""One process of a distributed test run, started by torchrun from tests/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT CASE DATA STEPS BATCH

CASE: `clean`; `nan` (one item of rank 1's share made NaN at step 30); `die` (rank 1 exits at step 60); `hang`
(rank 1 stops answering at step 60). Each process writes OUT.rank<R>.json: its weights' digest and guard state,
so the test can check that every process holds the same model and took the same decisions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

import torch

from steadydiff import RunConfig
from steadydiff.config import apply_overrides
from steadydiff.train.loop import train

FAULT_STEP = 30
END_STEP = 60


def digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    out, case, data, steps, batch, *overrides = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format=f"rank {rank}: %(message)s")
    cfg = RunConfig()
    apply_overrides(cfg, [f"data.source={data}", f"train.steps={steps}", f"train.batch_size={batch}",
                          "train.sample_metrics_every=0", "train.sample_every=0", "train.checkpoint_every=25",
                          *overrides])

    def fault(step: int, x: torch.Tensor) -> torch.Tensor:
        if case == "nan" and step == FAULT_STEP:
            x = x.clone()
            x[len(x) * 3 // 4] = float("nan")  # an item in the second half of the global batch: rank 1's share
        if case in ("die", "hang") and step == END_STEP and rank == 1:
            if case == "die":
                os._exit(1)
            time.sleep(3600)
        return x

    result = train(cfg, out, progress=False, batch_transform=fault if case != "clean" else None)
    with open(f"{out}.rank{rank}.json", "w") as fh:
        json.dump({"model": digest(result.net.state_dict()), "skipped": result.skipped_steps}, fh)


if __name__ == "__main__":
    main()
