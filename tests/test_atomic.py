"""Files are written whole or not at all: a failed write leaves the old file and no debris; rewriting a checkpoint
of the same step swaps it whole."""

import pytest
import torch

from steadydiff.atomic import atomic_path, write_text_atomic
from steadydiff.train import checkpoint as ckpt


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_rewriting_a_checkpoint_of_the_same_step_replaces_it_whole(tmp_path):
    def save(value: float) -> None:
        ckpt.save_checkpoint(tmp_path, 10, model={"w": torch.full((3,), value)}, ema={"w": torch.zeros(3)},
                             optimizer={"state": {}, "param_groups": []}, state={"step": 10}, keep=3)

    save(1.0)
    save(2.0)  # e.g. the same step written again after a rollback
    assert [p.name for p in tmp_path.iterdir()] == ["step-10"]
    assert torch.equal(ckpt.load_checkpoint(tmp_path / "step-10")["model"]["w"], torch.full((3,), 2.0))
