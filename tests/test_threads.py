"""The CPU thread count: given, honoured from OMP_NUM_THREADS, measured, and kept by a resumed run."""

from __future__ import annotations

import logging

import pytest
import torch

from steadydiff.config import from_dict
from steadydiff.threads import choose_threads, usable_cores
from steadydiff.train.loop import train


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def matmul() -> None:
    a = torch.randn(256, 256)
    for _ in range(4):
        a = torch.tanh(a @ a)


def test_given_count_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(3, matmul) == (3, "train.threads") and torch.get_num_threads() == 3


def test_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    calls = []
    assert choose_threads(0, lambda: calls.append(1)) == (1, "OMP_NUM_THREADS") and not calls  # nothing timed


def test_measured_count_is_one_of_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n, why = choose_threads(0, matmul)
    assert torch.get_num_threads() == n
    if usable_cores() == 1:
        assert n == 1
    else:
        assert n in (1, usable_cores()) and "ms with 1" in why
    # two processes sharing two cores: one thread each, nothing to measure
    assert choose_threads(0, matmul, processes=usable_cores())[0] == 1


def test_resumed_run_keeps_its_thread_count(tmp_path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = from_dict({"data": {"source": "toy:ring8", "toy_samples": 500},
                     "net": {"mlp": {"width": 32, "blocks": 1}},
                     "train": {"steps": 10, "batch_size": 32, "threads": 2, "sample_metrics_every": 0,
                               "sample_every": 0, "val_items": 16},
                     "sample": {"steps": 4, "grid_n": 16}})
    train(cfg, tmp_path / "run", progress=False)
    torch.set_num_threads(1)
    cfg.train.steps, cfg.train.threads = 15, 0
    with caplog.at_level(logging.INFO, logger="steadydiff"):
        train(cfg, tmp_path / "run", progress=False)
    assert "threads: 2 per process (the count the run started with)" in caplog.text
    assert torch.get_num_threads() == 2


def test_loading_measures_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import steadydiff.threads as threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_FOR_LOADING", None)
    calls = []

    def work() -> None:
        calls.append(1)
        matmul()

    first = threads.threads_for_loading(work)
    timed = len(calls)
    assert threads.threads_for_loading(work) == first and len(calls) == timed  # the later loads time nothing
    assert torch.get_num_threads() == first[0]
