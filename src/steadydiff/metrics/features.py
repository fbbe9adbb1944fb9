"""A tiny digit classifier whose penultimate layer is a feature space for Fréchet distance.

FID (Heusel et al. 2017) measures the Fréchet distance between Gaussians fitted to Inception-v3 pool3
features. Inception was trained on 299×299 ImageNet photos and means little on 8×8 digits, and it needs
a download; so for digits (and 28×28 MNIST) we train a small CNN classifier on the training split and
use its penultimate activations instead, the usual substitute for small grey digits: a classifier of the
same domain responds to stroke shape and class identity, which is what a sample must get right.

The classifier sees only the training split, so the held-out split stays a fair reference. Training is
deterministic given the seed (initial weights from `torch.manual_seed`, the data order from a seeded
generator). Weights are saved as safetensors with a JSON sidecar describing the architecture; nothing
is pickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .frechet import frechet_distance

FORMAT = "steadydiff.DigitsFeatureNet"
FORMAT_VERSION = 1


class DigitsFeatureNet(nn.Module):
    """Conv-conv-pool ×2, adaptive average pool to 2×2, a `features`-wide layer, a linear class head.

    Input: images in [-1, 1] shaped (N, in_channels, H, W) with H, W ≥ 4 (8×8 digits, 28×28 MNIST, ...).
    The adaptive pool makes the feature layer's width independent of the input size, so one architecture
    serves both sets; `image_size` is recorded only to reshape flattened inputs.
    """

    def __init__(self, *, in_channels: int = 1, image_size: int = 8, channels: tuple[int, int] = (32, 64),
                 features: int = 128, classes: int = 10):
        super().__init__()
        if image_size < 4:
            raise ValueError(f"image_size must be at least 4 (two 2× poolings), got {image_size}")
        c1, c2 = channels
        self.config = {"in_channels": int(in_channels), "image_size": int(image_size),
                       "channels": [int(c1), int(c2)], "features": int(features), "classes": int(classes)}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.feature_layer = nn.Linear(4 * c2, features)
        self.head = nn.Linear(features, classes)

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.config["in_channels"], self.config["image_size"]
        if x.ndim == 2 and x.shape[1] == c * s * s:  # flattened pixels
            x = x.reshape(-1, c, s, s)
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"expected images shaped (N, {c}, H, W) or (N, {c * s * s}), got {tuple(x.shape)}")
        return x.float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after the ReLU), the analogue of Inception's pool3 features in FID."""
        return F.relu(self.feature_layer(self.body(self._as_images(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x.detach().cpu().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.float32))


@torch.no_grad()
def extract_features(net: DigitsFeatureNet, x: np.ndarray | torch.Tensor, *, batch_size: int = 500) -> np.ndarray:
    """Penultimate features of images in [-1, 1], batched, in eval mode, without gradients (float64)."""
    was_training = net.training
    net.eval()
    t = _tensor(x)
    out = [net.features(t[i:i + batch_size]).double() for i in range(0, len(t), batch_size)]
    net.train(was_training)
    return torch.cat(out).numpy()


@torch.no_grad()
def predict(net: DigitsFeatureNet, x: np.ndarray | torch.Tensor, *, batch_size: int = 500) -> np.ndarray:
    """The most likely class (int64) of each image in [-1, 1], batched, in eval mode."""
    was_training = net.training
    net.eval()
    t = _tensor(x)
    pred = torch.cat([net(t[i:i + batch_size]).argmax(1) for i in range(0, len(t), batch_size)])
    net.train(was_training)
    return pred.numpy()


def accuracy(net: DigitsFeatureNet, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
             batch_size: int = 500) -> float:
    """Share of images in [-1, 1] whose predicted class equals the label."""
    return float((predict(net, x, batch_size=batch_size) == np.asarray(y)).mean())


def class_shares(labels: np.ndarray, classes: int) -> np.ndarray:
    """The share of items in each of `classes` classes (float64, summing to 1)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must be a non-empty 1-D array of integers in [0, {classes}), got shape "
                         f"{labels.shape}" + (f" with values {labels.min()}..{labels.max()}" if labels.size else ""))
    return np.bincount(labels.astype(np.int64), minlength=classes) / len(labels)


def class_balance(predicted: np.ndarray, reference_shares: np.ndarray) -> dict[str, Any]:
    """How the classes predicted for a sample set are spread, against the class shares of the training data.

    `shares`: the share of samples per class; `tv_distance`: the total-variation distance ½ Σ_k |p_k − q_k|
    between those shares p and `reference_shares` q (0: the same balance; 1: no class in common; a set of one
    class scores 1 − q_k); `smallest_share`: the rarest class's share (0 when a class is missing, the sign of
    a model that dropped a mode).
    """
    q = np.asarray(reference_shares, dtype=np.float64)
    p = class_shares(predicted, len(q))
    return {"shares": p.tolist(), "tv_distance": float(0.5 * np.abs(p - q).sum()), "smallest_share": float(p.min())}


def train_feature_net(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, seed: int = 0, epochs: int = 20,
                      batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4, classes: int | None = None,
                      features: int = 128, channels: tuple[int, int] = (32, 64),
                      threads: int | None = 1) -> DigitsFeatureNet:
    """Train the classifier on images `x` in [-1, 1] shaped (N, C, H, W) with integer labels `y`.

    Adam with a cosine learning-rate decay to zero over all steps (Loshchilov & Hutter 2017); plain
    cross-entropy, no augmentation, so the features describe the data as it is. Deterministic given `seed`
    on a given machine: weights from torch.manual_seed(seed), the order of each epoch from a generator
    seeded with `seed`. The data passed in is the only data it sees.

    `threads` (default 1) sets torch's intra-op threads for the duration of the call, restored after.
    The ops of this net are so small that thread synchronisation outweighs the work: on a 2-core machine
    busy with other work, 2 threads took 43 s where 1 took 6 s. A fixed count also keeps the result
    independent of the caller's thread setting. None leaves the caller's setting alone.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(x, y, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      classes=classes, features=features, channels=channels)
    finally:
        torch.set_num_threads(previous)


def _train(x, y, *, seed: int, epochs: int, batch_size: int, lr: float, weight_decay: float, classes: int | None,
           features: int, channels: tuple[int, int]) -> DigitsFeatureNet:
    xt, yt = _tensor(x), torch.as_tensor(np.asarray(y)).long()
    if xt.ndim != 4:
        raise ValueError(f"x must be images shaped (N, C, H, W), got {tuple(xt.shape)}")
    if len(xt) != len(yt):
        raise ValueError(f"x has {len(xt)} items but y has {len(yt)} labels")
    n_classes = int(classes if classes is not None else int(yt.max()) + 1)
    torch.manual_seed(seed)
    net = DigitsFeatureNet(in_channels=xt.shape[1], image_size=xt.shape[2], channels=channels, features=features,
                           classes=n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(xt) / batch_size)
    total, step = epochs * steps_per_epoch, 0
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=order)
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            for group in opt.param_groups:  # cosine decay, evaluated at the start of each step
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return net.eval()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_feature_net(net: DigitsFeatureNet, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Weights to `path` (safetensors) and the architecture to the JSON sidecar beside it (same stem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, str(path))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": net.config, "info": info or {}}
    _sidecar(path).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def load_feature_net(path: str | Path) -> DigitsFeatureNet:
    """The net saved by `save_feature_net`, in eval mode."""
    path = Path(path)
    side = _sidecar(path)
    if not side.is_file():
        raise FileNotFoundError(f"{side} is missing: a feature net is saved as {path.name} plus {side.name}")
    meta = json.loads(side.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{side} describes {meta.get('format')!r} version {meta.get('version')!r}, "
                         f"not {FORMAT!r} version {FORMAT_VERSION}")
    cfg = meta["config"]
    net = DigitsFeatureNet(in_channels=cfg["in_channels"], image_size=cfg["image_size"],
                           channels=tuple(cfg["channels"]), features=cfg["features"], classes=cfg["classes"])
    net.load_state_dict(load_file(str(path)))
    return net.eval()


# --------------------------------------------------------------------------------------------------
# Nets shipped with the package (regenerated by benchmarks/make_feature_nets.py).

WEIGHTS_DIR = Path(__file__).with_name("weights")
# Built-in set → the range its pixels span in user units. The shipped net for a set was trained (seed 0) on
# the training split `load_data(DataConfig(source=name))` gives (default holdout and split_seed), with pixels
# clipped to this range and mapped onto [-1, 1] by `to_net_input`.
SHIPPED_PIXEL_RANGE: dict[str, tuple[float, float]] = {"digits": (0.0, 16.0), "mnist": (0.0, 255.0)}


def shipped_path(name: str) -> Path:
    """Where the shipped net for built-in set `name` lives (its JSON sidecar sits beside it)."""
    return WEIGHTS_DIR / f"{name}-features.safetensors"


def load_shipped_feature_net(name: str) -> DigitsFeatureNet | None:
    """The classifier shipped for built-in set `name` ("digits" or "mnist"), in eval mode; None for any
    other name or when the weights are missing from this installation."""
    if name not in SHIPPED_PIXEL_RANGE or not shipped_path(name).is_file():
        return None
    return load_feature_net(shipped_path(name))


def to_net_input(x: np.ndarray, name: str, value_range: tuple[float, float] | None = None,
                 size: int | None = None) -> np.ndarray:
    """Images in user units → clipped to the pixel range (built-in set `name`'s, or `value_range`) and mapped onto
    [-1, 1]; resized to `size` × `size` (bilinear with antialiasing) when they have another size."""
    lo, hi = value_range if value_range is not None else SHIPPED_PIXEL_RANGE[name]
    y = ((np.clip(np.asarray(x, dtype=np.float32), lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)
    if size is not None and y.shape[-2:] != (size, size):
        y = F.interpolate(torch.from_numpy(y), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).numpy()
    return y


# A shipped classifier also scores grey images of another size (resized to its own), up to this factor smaller or
# larger: its features still follow strokes and shapes there, where pixel distances reward blur.
RESIZE_TOLERANCE = 2.0


def shipped_for(item_shape: tuple[int, ...]) -> str | None:
    """The built-in set whose shipped classifier fits grey square images of `item_shape` within RESIZE_TOLERANCE
    (the closest size on a log scale), or None."""
    if len(item_shape) != 3 or item_shape[0] != 1 or item_shape[1] != item_shape[2]:
        return None
    fits = []
    for name in SHIPPED_PIXEL_RANGE:
        side = shipped_path(name).with_suffix(".json")
        if not side.is_file():
            continue
        size = json.loads(side.read_text())["config"]["image_size"]
        ratio = abs(math.log(item_shape[1] / size))
        if ratio <= math.log(RESIZE_TOLERANCE) + 1e-9:
            fits.append((ratio, name))
    return min(fits)[1] if fits else None


def self_supervised_labels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N, C, H, W) → four transformed copies of each and which transformation each copy had (0–3), for
    a feature net trained without class labels (Gidaris et al. 2018, "Unsupervised representation learning by
    predicting image rotations"): turns by 0/90/180/270° for square images, else no flip / flip left-right /
    up-down / both. Telling them apart needs the objects' shape and orientation."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] == x.shape[-2]:
        copies = [np.rot90(x, k, axes=(-2, -1)) for k in range(4)]
        how = "the turn (0/90/180/270°) of each image"
    else:
        copies = [x, x[..., ::-1], x[..., ::-1, :], x[..., ::-1, ::-1]]
        how = "the flip (none, left-right, up-down, both) of each image"
    return (np.ascontiguousarray(np.concatenate(copies)),
            np.repeat(np.arange(4), len(x)).astype(np.int64), how)


def frechet_feature_distance(net: DigitsFeatureNet, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *,
                             batch_size: int = 500) -> float:
    """Fréchet distance (Heusel et al. 2017, Eq. 6) between the feature Gaussians of two image sets in [-1, 1].

    Like FID, it is biased upward for small sets (the covariance estimate is noisy), so compare values
    computed from sets of the same sizes.
    """
    return frechet_distance(extract_features(net, a, batch_size=batch_size),
                            extract_features(net, b, batch_size=batch_size))


__all__ = ["RESIZE_TOLERANCE", "SHIPPED_PIXEL_RANGE", "DigitsFeatureNet", "accuracy", "class_balance",
           "class_shares", "extract_features", "frechet_feature_distance", "load_feature_net",
           "load_shipped_feature_net", "predict", "save_feature_net", "self_supervised_labels", "shipped_for",
           "shipped_path", "to_net_input", "train_feature_net"]
