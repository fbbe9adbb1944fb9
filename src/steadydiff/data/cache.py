"""The preprocessed image cache of a streamed image folder (data.stream).

A folder is decoded once — cropped, resized and converted exactly as `read_folder` does in memory — into one
file of (N, C, S, S) uint8 rows beside a `meta.json`, under `data.cache_dir` (default
`$XDG_CACHE_HOME/steadydiff/images`, else `~/.cache/steadydiff/images`). Its directory is named by the
source's key: the SHA-256 of the folder's image list (relative path, size and modification time of each file)
and the reading settings, so a changed, added or removed image gives a new key and the cache is rebuilt (the
stale one is removed). Opening checks the file's size and the SHA-256 of its bytes against `meta.json`: a cache
that does not match is refused, never read, with the fix (delete it).

The build holds one image in memory at a time and writes with plain file writes (no memory map), so building,
like training, takes memory independent of the number of images. It is written into a temporary directory
and renamed into place whole, so an interrupted build leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError
from .sources import FolderRead, Raw, decode_folder, folder_raw, folder_target, image_files
from .stream import RowFile

CACHE_VERSION = 1
ROWS_FILE = "images.u8"
META_FILE = "meta.json"
_HASH_CHUNK = 8 << 20


def cache_root(cache_dir: str | None) -> Path:
    """Where image caches live: data.cache_dir, else $XDG_CACHE_HOME/steadydiff/images, else
    ~/.cache/steadydiff/images."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "steadydiff" / "images"


def source_key(folder: Path, images: list[Path], image_size: int, channels: str, bad_files: str) -> str:
    """The cache's name: a digest of every image's (relative path, size, mtime) and the reading settings."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, channels, bad_files]).encode())
    for p in images:
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def luma_pillow(rgb: np.ndarray) -> np.ndarray:
    """Grey from (..., 3, H, W) uint8 RGB exactly as Pillow's RGB → L conversion computes it (ITU-R BT.601
    weights in 16-bit fixed point, rounded: (R·19595 + G·38470 + B·7471 + 2¹⁵) >> 16)."""
    c = rgb.astype(np.uint32)
    y = (c[..., 0, :, :] * 19595 + c[..., 1, :, :] * 38470 + c[..., 2, :, :] * 7471 + 0x8000) >> 16
    return y.astype(np.uint8)[..., None, :, :]


def read_folder_cached(folder: Path, image_size: int, channels: str, bad_files: str,
                       cache_dir: str | None) -> Raw:
    """`read_folder`'s result with the images as rows on disk (a `RowFile`), from the cache, built if needed."""
    images, others = image_files(folder)
    if channels not in ("auto", "grey", "rgb"):
        folder_target(channels, FolderRead())  # its error, before any image is decoded
    root = cache_root(cache_dir)
    key = source_key(folder, images, image_size, channels, bad_files)
    where = root / key
    if not (where / META_FILE).exists():
        _build(where, folder, images, image_size, channels, bad_files)
    meta = open_cache(where)
    found = FolderRead(kept=[folder / p for p in meta["kept"]], skipped=meta["skipped"], colour=meta["colour"],
                       n_resized=meta["n_resized"], n_cropped=meta["n_cropped"], n_alpha=meta["n_alpha"])
    found.modes.update(meta["modes"])
    rows = RowFile(path=where / ROWS_FILE, offset=0, dtype=np.dtype(np.uint8), shape=tuple(meta["shape"]))
    raw = folder_raw(folder, rows, found, channels, image_size, meta["target"], others)
    raw.notes.append(f"{folder}: streamed from the image cache {where} ({rows.row_bytes * len(rows) / 2**20:,.1f} MiB "
                     "of uint8 rows, read on demand; data.stream)")
    return raw


def open_cache(where: Path) -> dict[str, Any]:
    """The cache's meta.json, after checking its rows file against it; a corrupt cache is refused."""
    def corrupt(why: str) -> DataError:
        return DataError(f"the image cache {where} is corrupt ({why}); delete that folder and rerun: it is rebuilt "
                         "from the images")

    try:
        meta = json.loads((where / META_FILE).read_text())
        shape = [int(s) for s in meta["shape"]]
        digest = str(meta["sha256"])
        if meta.get("version") != CACHE_VERSION:
            raise corrupt(f"version {meta.get('version')}, this steadydiff writes {CACHE_VERSION}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise corrupt(f"{META_FILE} unreadable: {e}") from None
    path = where / ROWS_FILE
    expected = int(np.prod(shape, dtype=np.int64))
    size = path.stat().st_size if path.exists() else -1
    if size != expected:
        raise corrupt(f"{ROWS_FILE} holds {max(size, 0):,} bytes, {META_FILE} announces {expected:,}")
    if _file_sha256(path) != digest:
        raise corrupt(f"the SHA-256 of {ROWS_FILE} differs from the one written when it was built")
    return meta


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _build(where: Path, folder: Path, images: list[Path], image_size: int, channels: str, bad_files: str) -> None:
    """Decode the folder into `where` (see the module docstring), then drop older caches of the same folder and
    settings."""
    root = where.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{where.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rgb_path = tmp / "rgb.u8"
        with open(rgb_path, "wb") as fh:
            def write(img: Image.Image) -> None:
                fh.write(np.ascontiguousarray(np.asarray(img.convert("RGB")).transpose(2, 0, 1)).tobytes())
            found = decode_folder(folder, images, image_size, bad_files, write)
        target = folder_target(channels, found)
        n, side = len(found.kept), image_size
        channels_out = 3 if target == "RGB" else 1
        out = tmp / ROWS_FILE
        h = hashlib.sha256()
        rgb = RowFile(path=rgb_path, offset=0, dtype=np.dtype(np.uint8), shape=(n, 3, side, side))
        per = max(1, _HASH_CHUNK // rgb.row_bytes)
        with open(out, "wb") as fh:
            for i in range(0, n, per):
                block = rgb.read_range(i, min(i + per, n))
                block = block if target == "RGB" else luma_pillow(block)
                data = np.ascontiguousarray(block).tobytes()
                h.update(data)
                fh.write(data)
        rgb.close()
        rgb_path.unlink()
        meta = {"version": CACHE_VERSION, "source": str(folder.resolve()),
                "settings": {"image_size": image_size, "channels": channels, "bad_files": bad_files},
                "shape": [n, channels_out, side, side], "sha256": h.hexdigest(), "target": target,
                "kept": [p.relative_to(folder).as_posix() for p in found.kept], "skipped": found.skipped,
                "colour": found.colour, "modes": dict(found.modes), "n_resized": found.n_resized,
                "n_cropped": found.n_cropped, "n_alpha": found.n_alpha}
        (tmp / META_FILE).write_text(json.dumps(meta))
        try:
            os.rename(tmp, where)
        except OSError:  # another process built it meanwhile: keep theirs
            if not (where / META_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _drop_stale(root, where, meta["source"], meta["settings"])


def _drop_stale(root: Path, keep: Path, source: str, settings: dict[str, Any]) -> None:
    """Remove the caches of the same folder and settings that an earlier state of the folder left."""
    for other in root.iterdir():
        if other == keep or other.name.startswith(".") or not (other / META_FILE).exists():
            continue
        try:
            meta = json.loads((other / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source") == source and meta.get("settings") == settings:
            shutil.rmtree(other, ignore_errors=True)
