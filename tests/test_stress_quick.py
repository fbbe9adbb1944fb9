"""The small version of benchmarks/stress.py: every case runs, guard on and off, and the guard does its job."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_stress_benchmark_small_version(tmp_path):
    # A copy of the script writes its runs under its own folder (tmp_path/benchmarks/out), not the repository's.
    (tmp_path / "benchmarks").mkdir()
    for name in ("stress.py", "_common.py"):
        shutil.copy(ROOT / "benchmarks" / name, tmp_path / "benchmarks" / name)
    done = subprocess.run([sys.executable, str(tmp_path / "benchmarks" / "stress.py"), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=3600)  # a hang guard only
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {(r["case"], r["guard"]): r for r in map(json.loads, (ln for ln in done.stdout.splitlines()
                                                                  if ln.startswith('{"data"')))}
    assert len(runs) == 14  # 7 cases × guard on/off
    assert all(r["finite_raw"] and r["finite_ema"] for (case, guard), r in runs.items() if guard)
    assert runs[("nan", True)]["incident_kinds"] == ["non_finite"]
    assert runs[("scale", True)]["incident_kinds"] == ["loss_spike"]
    assert not runs[("nan", False)]["finite_raw"] and runs[("nan", False)]["high_quality"] is None
    assert runs[("clean", True)]["incident_kinds"] == []
