"""Data larger than memory (data.stream): the image cache, .npy files read row by row, streamed batches."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import from_dict
from steadydiff.data import DataConfig, describe, load_data
from steadydiff.data.cache import META_FILE, ROWS_FILE, luma_pillow
from steadydiff.data.normalise import Normaliser
from steadydiff.data.stream import LazyItems, RowFile
from steadydiff.errors import DataError
from steadydiff.train.batches import Reader, StreamedItems
from steadydiff.train.order import batch_indices


def make_folder(root, n_per_class=24, colour_every=3, seed=0):
    """An ImageFolder of two classes: odd-sized images, some grey, some in colour, one with transparency."""
    rng = np.random.default_rng(seed)
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, (10 + i % 3, 12, 3), dtype=np.uint8)
            if i % colour_every:
                a[..., 1] = a[..., 2] = a[..., 0]
            img = Image.fromarray(a)
            if i == 5:
                img = img.convert("RGBA")
            img.save(root / c / f"{i:03d}.png")
    return root


def stream_cfg(folder, cache, **kw):
    return DataConfig(source=str(folder), image_size=8, stream="on", cache_dir=str(cache), **kw)


@pytest.mark.parametrize("channels", ["auto", "grey", "rgb"])
def test_streamed_folder_equals_in_memory(tmp_path, channels):
    """Every item, label, note and the fingerprint of a streamed folder equal the in-memory reading's (grey from
    colour by Pillow's exact integer luma)."""
    folder = make_folder(tmp_path / "imgs")
    mem = load_data(DataConfig(source=str(folder), image_size=8, channels=channels, stream="off"))
    st = load_data(stream_cfg(folder, tmp_path / "cache", channels=channels))
    assert isinstance(st.train, LazyItems) and st.streamed
    assert np.array_equal(np.asarray(st.train), mem.train)
    assert np.array_equal(st.holdout, mem.holdout)
    assert np.array_equal(st.train_labels, mem.train_labels) and st.class_names == ["cats", "dogs"]
    assert st.fingerprint == mem.fingerprint
    assert describe(st) == describe(mem)
    assert [n for n in st.notes if "image cache" not in n] == mem.notes


def test_luma_matches_pillow():
    a = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(a).convert("L"))
    assert np.array_equal(luma_pillow(a.transpose(2, 0, 1)[None])[0, 0], want)


def test_cache_is_reused_rebuilt_when_the_folder_changes_and_refused_when_corrupt(tmp_path):
    folder = make_folder(tmp_path / "imgs", n_per_class=6)
    cache = tmp_path / "cache"
    load_data(stream_cfg(folder, cache))
    (first,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    built = (first / ROWS_FILE).stat().st_mtime_ns
    load_data(stream_cfg(folder, cache))  # reused, not rebuilt
    assert (first / ROWS_FILE).stat().st_mtime_ns == built

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "cats" / "new.png")
    ds = load_data(stream_cfg(folder, cache))
    (second,) = [p for p in cache.iterdir() if not p.name.startswith(".")]  # the stale cache is gone
    assert second != first and len(ds.train) + len(ds.holdout) == 13

    data = bytearray((second / ROWS_FILE).read_bytes())
    data[100] ^= 0xFF
    (second / ROWS_FILE).write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt.*SHA-256.*delete that folder"):
        load_data(stream_cfg(folder, cache))
    (second / ROWS_FILE).write_bytes(bytes(data[:-5]))
    with pytest.raises(DataError, match=f"corrupt.*{ROWS_FILE} holds"):
        load_data(stream_cfg(folder, cache))
    (second / META_FILE).write_text("{")
    with pytest.raises(DataError, match="corrupt"):
        load_data(stream_cfg(folder, cache))


def test_npy_read_row_by_row(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    mem = load_data(DataConfig(source=str(tmp_path / "v.npy"), stream="off"))
    st = load_data(DataConfig(source=str(tmp_path / "v.npy"), stream="on"))
    assert np.array_equal(np.asarray(st.train), mem.train) and st.fingerprint == mem.fingerprint
    idx = np.array([7, 3, 3, 250, 0])  # any order, repeats
    assert np.array_equal(st.train[idx], mem.train[idx])
    # (N, H, W) grey images are a reshape of the rows: streamed; channels-last would need a transpose: refused
    np.save(tmp_path / "g.npy", np.zeros((20, 6, 6), np.uint8))
    assert load_data(DataConfig(source=str(tmp_path / "g.npy"), kind="image", stream="on")).item_shape == (1, 6, 6)
    np.save(tmp_path / "hwc.npy", np.zeros((20, 6, 6, 3), np.uint8))
    with pytest.raises(DataError, match="hwc.npy.*moving axes.*data.stream=off"):
        load_data(DataConfig(source=str(tmp_path / "hwc.npy"), stream="on"))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    with pytest.raises(DataError, match="Fortran order"):
        load_data(DataConfig(source=str(tmp_path / "f.npy"), stream="on"))
    bad = x.copy()
    bad[123, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="item 123 holds NaN"):
        load_data(DataConfig(source=str(tmp_path / "nan.npy"), stream="on"))
    with pytest.raises(DataError, match="data.stream=on reads image folders and .npy"):
        load_data(DataConfig(source="digits", stream="on"))


def test_reader_gives_the_batch_of_each_position(tmp_path):
    """Prefetching workers hand out the in-memory batch of every position asked, also after going back."""
    x = np.random.default_rng(0).normal(size=(70, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    items = LazyItems(RowFile.npy(tmp_path / "v.npy"))
    norm = Normaliser.fit(x, "vector")
    mem = torch.as_tensor(np.asarray(norm.forward(x), dtype=np.float32))
    reader = Reader(StreamedItems(items, norm), seed=3, batch=16, total_samples=160, workers=1)
    try:
        for pos in (0, 16, 16, 32, 48, 16, 32, 144):  # a repeat, a rollback, a jump
            idx = batch_indices(70, 3, pos, 16)
            assert torch.equal(reader.get(pos, idx), mem[torch.from_numpy(idx)])
    finally:
        reader.close()


def image_run(folder, **data):
    return from_dict({"data": {"image_size": 8, **data},
                      "net": {"unet": {"channels": 16, "channel_mult": [1, 2], "groups": 4}},
                      "train": {"steps": 12, "batch_size": 8, "log_every": 4, "val_every": 4, "checkpoint_every": 6,
                                "sample_every": 0, "val_items": 8, "sample_metrics_every": 0},
                      "sample": {"steps": 3, "grid_n": 4}})


def final_weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "step-12" / "model.safetensors"))


def test_streamed_training_equals_in_memory_and_resumes(tmp_path):
    """The same run on a folder read into memory, streamed, and streamed through a prefetching worker ends with
    bit-identical weights; a streamed run stopped at its step-6 checkpoint resumes to the same weights."""
    folder = make_folder(tmp_path / "imgs")
    cache = str(tmp_path / "cache")
    runs = {"memory": image_run(folder, stream="off"), "streamed": image_run(folder, stream="on", cache_dir=cache),
            "worker": image_run(folder, stream="on", cache_dir=cache, workers=1)}
    for name, cfg in runs.items():
        steadydiff.train(cfg, data=folder, out=tmp_path / name, progress=False)
    want = final_weights(tmp_path / "memory")
    for name in ("streamed", "worker"):
        got = final_weights(tmp_path / name)
        assert all(torch.equal(want[k], got[k]) for k in want), name
    for name in ("memory", "streamed"):
        info = json.loads((tmp_path / name / "dataset.json").read_text())
        assert info["fingerprint"] == json.loads((tmp_path / "memory" / "dataset.json").read_text())["fingerprint"]
    shutil.rmtree(tmp_path / "streamed" / "checkpoints" / "step-12")
    steadydiff.train(runs["streamed"], data=folder, out=tmp_path / "streamed", progress=False)
    got = final_weights(tmp_path / "streamed")
    assert all(torch.equal(want[k], got[k]) for k in want)
    # the trained model samples in pixel units from a streamed run
    x = steadydiff.load(tmp_path / "streamed").sample(2, steps=3, seed=0)
    assert x.shape == (2, 3, 8, 8) and 0 <= x.min() and x.max() <= 255


def test_rowfile_pickles_as_a_path(tmp_path):
    import pickle

    np.save(tmp_path / "v.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    rows = RowFile.npy(tmp_path / "v.npy")
    rows.read_range(0, 1)  # opens a descriptor
    again = pickle.loads(pickle.dumps(rows))
    assert again._fd is None and np.array_equal(again.read_rows(np.array([3, 0])), [[9, 10, 11], [0, 1, 2]])
    os.utime(tmp_path / "v.npy")
