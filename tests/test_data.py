"""The data layer on real data: built-in sets, generated image folders and files, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from steadydiff.data import (
    DataConfig,
    Normaliser,
    check_finite,
    check_min_items,
    describe,
    hflip,
    load_data,
    split_indices,
)
from steadydiff.data.sources import GRID25_CENTRES, RING8_CENTRES
from steadydiff.errors import DataError


def cfg(source: str, **kw) -> DataConfig:
    return DataConfig(source=source, **kw)


# --------------------------------------------------------------------------------------------------
# Built-in sets.


def test_digits_split_and_describe():
    ds = load_data(cfg("digits", holdout=297))
    assert ds.kind == "image" and ds.item_shape == (1, 8, 8)
    assert ds.train.shape == (1500, 1, 8, 8) and ds.holdout.shape == (297, 1, 8, 8)
    assert ds.train.dtype == np.float32
    assert ds.train.min() == 0 and ds.train.max() == 16
    assert set(ds.train_labels.tolist()) == set(range(10)) and len(ds.holdout_labels) == 297
    assert describe(ds) == "digits: 1,500 train + 297 held-out images 1×8×8, values 0–16"


def test_mnist():
    ds = load_data(cfg("mnist"))
    assert ds.train.shape == (4500, 1, 28, 28) and ds.holdout.shape == (500, 1, 28, 28)
    assert ds.train.min() == 0 and ds.train.max() == 255
    assert len(np.unique(ds.train_labels)) == 10


@pytest.mark.parametrize("name, n, d, classes", [("iris", 150, 4, 3), ("wine", 178, 13, 3)])
def test_tables(name, n, d, classes):
    ds = load_data(cfg(name))
    assert ds.kind == "vector" and ds.item_shape == (d,)
    assert len(ds.train) + len(ds.holdout) == n
    assert len(ds.columns) == d and len(np.unique(ds.train_labels)) == classes


@pytest.mark.parametrize("name, centres", [("toy:grid25", GRID25_CENTRES), ("toy:ring8", RING8_CENTRES)])
def test_toy_mixtures_sit_on_their_modes(name, centres):
    ds = load_data(cfg(name, toy_samples=4000))
    assert ds.train.shape == (3600, 2) and ds.mode_std == 0.05
    np.testing.assert_allclose(ds.modes, centres, atol=1e-6)
    dist = np.linalg.norm(ds.train[:, None] - ds.modes[None], axis=-1)
    assert dist.min(axis=1).max() < 6 * ds.mode_std  # every point within 6 std of a mode
    assert (dist.argmin(axis=1) == ds.train_labels).all()  # labels are the components
    counts = np.bincount(ds.train_labels, minlength=len(centres))
    assert counts.min() > 0.5 * counts.mean()  # equal weights: no mode starved
    again = load_data(cfg(name, toy_samples=4000))
    np.testing.assert_array_equal(ds.train, again.train)  # a fixed seed


def test_swissroll():
    ds = load_data(cfg("toy:swissroll", toy_samples=2000))
    assert ds.train.shape == (1800, 2) and ds.modes is None
    r = np.linalg.norm(ds.train, axis=1)
    assert 0.5 < r.min() and r.max() < 3.5


# --------------------------------------------------------------------------------------------------
# Image folders.


def test_folder_of_mixed_images(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L").save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB").save(tmp_path / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / "sub/c.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").convert("P").save(tmp_path / "d.PNG")
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"junk")  # hidden files are skipped
    ds = load_data(cfg(str(tmp_path), image_size=16, holdout=0))
    assert ds.train.shape == (4, 3, 16, 16)  # auto: RGB because some image has colour
    assert ds.train.min() >= 0 and ds.train.max() <= 255
    notes = " | ".join(ds.notes)
    assert "resized 2 of 4 images to 16×16" in notes and "centre-cropped" in notes
    assert "converted 3 of 4 images to RGB" in notes
    assert "transparency" in notes and "ignored 1 non-image" in notes
    grey = load_data(cfg(str(tmp_path), image_size=8, channels="grey", holdout=0))
    assert grey.train.shape == (4, 1, 8, 8)


def test_folder_of_grey_images_stays_grey(tmp_path):
    for i in range(3):
        Image.new("RGB", (10, 10), (i * 50,) * 3).save(tmp_path / f"{i}.png")  # RGB mode, grey content
    ds = load_data(cfg(str(tmp_path), image_size=10, holdout=1))
    assert ds.train.shape == (2, 1, 10, 10) and ds.holdout.shape == (1, 1, 10, 10)


# --------------------------------------------------------------------------------------------------
# Arrays, CSV, torch datasets.


def test_npy_shapes(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "hwc.npy", rng.random((10, 6, 6, 3)))
    ds = load_data(cfg(str(tmp_path / "hwc.npy")))
    assert ds.item_shape == (3, 6, 6) and any("channels-last" in n for n in ds.notes)
    np.savez(tmp_path / "two.npz", x=rng.random((10, 5, 5)), y=np.arange(10))
    ds = load_data(cfg(str(tmp_path / "two.npz"), npz_key="x"))
    assert ds.item_shape == (1, 5, 5)


def test_csv_with_header(tmp_path):
    (tmp_path / "t.csv").write_text("a;b\n1;2\n\n3;4.5\n5;6\n")
    ds = load_data(cfg(str(tmp_path / "t.csv"), holdout=0))
    assert ds.columns == ["a", "b"] and ds.train.tolist() == [[1, 2], [3, 4.5], [5, 6]]


def test_torch_dataset_input():
    x = torch.randn(12, 1, 4, 4)
    y = torch.arange(12) % 3
    ds = load_data(cfg("unused", holdout=2), data=torch.utils.data.TensorDataset(x, y))
    assert ds.train.shape == (10, 1, 4, 4) and ds.train_labels.dtype == np.int64
    all_x = np.concatenate([ds.train, ds.holdout])
    all_y = np.concatenate([ds.train_labels, ds.holdout_labels])
    order = np.argsort([np.where((x.numpy() == v).all(axis=(1, 2, 3)))[0][0] for v in all_x])
    np.testing.assert_array_equal(all_y[order], y.numpy())  # labels travel with their items
    arr = load_data(cfg("unused", holdout=0), data=np.zeros((5, 3), dtype=np.int64) + np.arange(5)[:, None])
    assert arr.kind == "vector" and arr.train_labels is None


def test_split_is_deterministic_and_disjoint():
    a_train, a_hold = split_indices(100, 0.25, seed=3)
    b_train, b_hold = split_indices(100, 0.25, seed=3)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_hold, b_hold)
    assert len(a_hold) == 25 and not set(a_train) & set(a_hold)
    assert sorted(set(a_train) | set(a_hold)) == list(range(100))
    _, c_hold = split_indices(100, 0.25, seed=4)
    assert set(c_hold) != set(a_hold)
    with pytest.raises(DataError, match="leaving none"):
        split_indices(5, 5, seed=0)


# --------------------------------------------------------------------------------------------------
# Every bad input gives a DataError saying what, where and how.


def test_missing_path():
    with pytest.raises(DataError, match=r"no such file or folder: nowhere/x\.csv.*built-in sets are: .*dig"):
        load_data(cfg("nowhere/x.csv"))


def test_unknown_builtin_suggests_closest():
    with pytest.raises(DataError, match="did you mean 'digits'"):
        load_data(cfg("digts"))
    with pytest.raises(DataError, match="did you mean 'toy:ring8'"):
        load_data(cfg("toy:ring"))


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        load_data(cfg(str(tmp_path)))


def test_corrupt_image_names_the_file_and_skip_leaves_it_out(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        (tmp_path / ("a" if i < 3 else "b")).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(
            tmp_path / ("a" if i < 3 else "b") / f"good{i}.png")
    whole = (tmp_path / "a" / "good0.png").read_bytes()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])  # a truncated PNG
    with pytest.raises(DataError, match=r"a/broken\.png.*cannot read.*data\.bad_files=skip"):
        load_data(cfg(str(tmp_path)))
    ds = load_data(cfg(str(tmp_path), bad_files="skip", holdout=0))
    assert len(ds.train) == 6 and sorted(s.split(":")[0] for s in ds.skipped) == ["a/broken.png", "b/cut.png"]
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1]  # the classes of the images kept
    assert "left out 2 unreadable image file(s)" in " | ".join(ds.notes)
    for f in (tmp_path / "a" / "broken.png", tmp_path / "b" / "cut.png"):
        f.unlink()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of its 1 image files could be read"):
        load_data(cfg(str(tmp_path / "c"), bad_files="skip"))


def test_one_colour_image_among_grey_ones_is_named(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(tmp_path / f"g{i}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").save(tmp_path / "odd.png")
    ds = load_data(cfg(str(tmp_path), image_size=8, holdout=0))
    assert ds.item_shape == (3, 8, 8)
    notes = " | ".join(ds.notes)
    assert "1 of 6 images have colour (odd.png); set data.channels=grey" in notes


def test_csv_non_numeric_column(tmp_path):
    (tmp_path / "t.csv").write_text("x,name\n1,2\n3,bob\n4,5\n")
    with pytest.raises(DataError, match=r"column 'name' is not numeric: line 3 holds 'bob'"):
        load_data(cfg(str(tmp_path / "t.csv")))


def test_csv_ragged(tmp_path):
    (tmp_path / "t.csv").write_text("1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataError, match=r"line 3 has 3 fields but line 1 has 2"):
        load_data(cfg(str(tmp_path / "t.csv")))


def test_csv_short_row_names_its_line_and_the_header(tmp_path):
    (tmp_path / "t.csv").write_text("a;b;c\n1;2;3\n\n4;5\n")
    with pytest.raises(DataError, match=r"line 4 has 2 fields but the header \(line 1\) has 3"):
        load_data(cfg(str(tmp_path / "t.csv")))


@pytest.mark.parametrize("name,sep", [("t.csv", ";"), ("t.tsv", "\t"), ("t.csv.gz", ","), ("t.csv.zip", "|"),
                                      ("t.csv.xz", ",")])
def test_csv_separators_sniffed_and_compressed_tables_read(tmp_path, name, sep):
    import gzip
    import lzma
    import zipfile

    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 3)).round(4)
    text = "\n".join([sep.join(["height", "width", "depth"])] + [sep.join(map(str, row)) for row in values]) + "\n"
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    elif name.endswith(".xz"):
        path.write_bytes(lzma.compress(text.encode()))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("table.csv", text)
    else:
        path.write_text(text)
    ds = load_data(cfg(str(path), holdout=0))
    assert ds.columns == ["height", "width", "depth"]
    assert np.allclose(np.sort(ds.train, 0), np.sort(values.astype(np.float32), 0))
    shown = {";": "semicolon", "\t": "tab", ",": "comma", "|": "bar"}[sep]
    assert f"{shown}-separated, first line is the header" in " | ".join(ds.notes)


def test_csv_empty(tmp_path):
    (tmp_path / "t.csv").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        load_data(cfg(str(tmp_path / "t.csv")))


def test_csv_nan_names_line_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,nan\n")
    with pytest.raises(DataError, match=r"1 value\(s\) are not finite \(1 NaN, 0 Inf\).*line 3, column 'b'"):
        load_data(DataConfig(source=str(tmp_path / "t.csv"), missing="error"))
    assert np.isnan(load_data(cfg(str(tmp_path / "t.csv"))).train).sum() <= 1  # by default: a missing value


def test_npy_nan_inf_counted(tmp_path):
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    x[7, 0] = np.inf
    x[8, 2] = -np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=r"3 value\(s\) are not finite \(1 NaN, 2 Inf\).*item 4"):
        load_data(DataConfig(source=str(tmp_path / "x.npy"), missing="error"))
    with pytest.raises(DataError, match=r"2 value\(s\) are infinite; the first is inf at item 7"):
        load_data(cfg(str(tmp_path / "x.npy")))  # NaN is a missing value by default, Inf never is


def test_object_npy_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy.*dtype=object.*never unpickles"):
        load_data(cfg(str(tmp_path / "obj.npy")))
    with pytest.raises(DataError, match="not numeric"):
        load_data(cfg("unused"), data=np.array([["a", "b"], ["c", "d"]]))


def test_npz_needs_key(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(DataError, match=r"2 arrays \(images, labels\).*data\.npz_key"):
        load_data(cfg(str(tmp_path / "d.npz")))
    with pytest.raises(DataError, match="Did you mean 'images'"):
        load_data(cfg(str(tmp_path / "d.npz"), npz_key="image"))


def test_unsupported_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 5, 5, 4)))
    with pytest.raises(DataError, match=r"unsupported array shape \(4, 5, 5, 4\); accepted shapes"):
        load_data(cfg(str(tmp_path / "x.npy")))
    with pytest.raises(DataError, match=r"reshape\(-1, 1\)"):
        load_data(cfg("unused"), data=np.zeros(5))


def test_too_few_items():
    with pytest.raises(DataError, match="at least 2"):
        check_min_items(np.zeros((1, 3)))
    check_finite(np.zeros((2, 3), dtype=np.int64), "ints")


# --------------------------------------------------------------------------------------------------
# Normaliser.


def test_image_normaliser_round_trip():
    x = np.random.default_rng(0).integers(0, 17, (50, 1, 8, 8)).astype(np.float32)
    norm = Normaliser.fit(x, "image")
    y = norm.forward(x)
    assert y.dtype == np.float32 and y.min() == -1 and y.max() == 1
    np.testing.assert_allclose(norm.inverse(y), x, atol=1e-5)
    t = norm.inverse(torch.from_numpy(y) * 3)  # far outside: clipped to the data range
    assert float(t.min()) == 0 and float(t.max()) == 16
    assert norm.value_range == (0.0, 16.0)
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.to_dict() == norm.to_dict() and again.kind == "image"
    np.testing.assert_array_equal(again.forward(x), y)


def test_vector_normaliser_round_trip_and_constant_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (200, 3))
    x[:, 1] = 7.0
    norm = Normaliser.fit(x, "vector", columns=["a", "const", "c"])
    y = norm.forward(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(y.std(axis=0), [1, 0, 1], atol=1e-9)
    np.testing.assert_allclose(norm.inverse(y), x, atol=1e-9)
    assert any("const" in n for n in norm.notes)
    yt = norm.forward(torch.from_numpy(x).float())
    assert yt.dtype == torch.float32
    np.testing.assert_allclose(norm.inverse(yt).numpy(), x, rtol=1e-5, atol=1e-5)
    d = json.loads(json.dumps(norm.to_dict()))
    again = Normaliser.from_dict(d)
    assert again.to_dict() == norm.to_dict()
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
    with pytest.raises(DataError, match="unknown kind"):
        Normaliser.from_dict({"kind": "audio"})


def test_load_data_notes_constant_feature():
    x = np.stack([np.arange(10.0), np.full(10, 2.0)], axis=1)
    ds = load_data(cfg("unused", holdout=0), data=x)
    assert any("constant" in n for n in ds.notes)


# --------------------------------------------------------------------------------------------------
# Augmentation.


def test_hflip_half_and_reproducible():
    x = torch.arange(4.0).repeat(1000, 1, 2, 1)  # (1000, 1, 2, 4): every row 0 1 2 3
    out = hflip(x, torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] == 3
    assert 400 < int(flipped.sum()) < 600
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and torch.equal(out[~flipped], x[~flipped])
    assert torch.equal(out, hflip(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, hflip(x, torch.Generator().manual_seed(1)))
    with pytest.raises(DataError, match="image batches"):
        hflip(torch.zeros(4, 3), torch.Generator())


def test_value_step_finds_the_grid_of_levels():
    """Pixels on levels lo + k·q give q; anything off an even grid, or too few levels, gives None."""
    from steadydiff.data.normalise import value_step

    digits = load_data(cfg("digits")).train
    assert value_step(digits) == 1.0  # 17 levels, 0..16
    assert value_step(np.arange(256, dtype=np.float32) / 255) == pytest.approx(1 / 255, rel=1e-4)
    assert value_step(np.array([2.0, 2.5, 4.0, 3.0])) == 0.5
    assert value_step(np.random.default_rng(0).random(1000)) is None
    assert value_step(np.array([0.0, 2.0, 5.0])) is None  # smallest gap 2 does not divide 5
    assert value_step(np.full(10, 3.0)) is None
    # In network units the step scales with the image normaliser's map onto [-1, 1].
    assert Normaliser.fit(digits, "image").image_step(digits) == pytest.approx(2 / 16)
    assert Normaliser.fit(digits.reshape(len(digits), -1), "vector").image_step(digits) is None


def test_augment_transforms_match_their_labels():
    """Each image's labels say exactly what was done: flip, quarter turns, integer shift (reflected border)."""
    from steadydiff.data.augment import AUG_DIM, augment

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(400, 2, 8, 8)).astype(np.float32))
    y, labels = augment(x, 0.5, torch.Generator().manual_seed(1))
    assert labels.shape == (400, AUG_DIM) and not torch.equal(y, x)
    turns = {(0.0, 0.0): 0, (1.0, -1.0): 1, (0.0, -2.0): 2, (-1.0, -1.0): 3}
    seen = set()
    for i in range(len(x)):
        flip, s, c, dx, dy = labels[i].tolist()
        want = x[i].flip(-1) if flip else x[i]
        want = torch.rot90(want, turns[(s, c)], dims=(-2, -1))
        dx, dy = int(dx), int(dy)  # max shift is 1 pixel at 8×8
        padded = torch.nn.functional.pad(want[None], (1, 1, 1, 1), mode="reflect")[0]
        want = padded[:, 1 - dy:9 - dy, 1 - dx:9 - dx]
        assert torch.equal(y[i], want), f"image {i}, labels {labels[i].tolist()}"
        seen.add((flip, turns[(s, c)], dx, dy))
    assert len(seen) > 30  # flips, every turn and every shift occur, alone and combined
    # Identity ↔ all-zero labels, and the share transformed follows p (1 − (1 − p)³ for square images).
    identity = (labels == 0).all(1)
    assert torch.equal(y[identity], x[identity])
    assert abs(identity.float().mean().item() - 0.125) < 0.05
    # Same generator state, same result; p = 0 changes nothing.
    y2, labels2 = augment(x, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(y2, y) and torch.equal(labels2, labels)
    y0, labels0 = augment(x, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(y0, x) and not labels0.any()


def test_augment_never_turns_non_square_images_and_refuses_vectors():
    from steadydiff.data.augment import augment

    x = torch.randn(64, 1, 6, 10)
    y, labels = augment(x, 1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not labels[:, 1:3].any() and labels[:, 0].all()
    with pytest.raises(DataError, match="data.augment=0"):
        augment(torch.randn(8, 3), 0.5, torch.Generator().manual_seed(0))
