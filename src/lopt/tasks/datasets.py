"""Offline datasets, each split four ways: train / inner_valid / outer_valid / test.

Nothing here downloads. Sources: scikit-learn's bundled sets (digits, breast_cancer, wine, iris;
diabetes for regression) and its two bundled photographs (patches, pixels), MNIST-1D generated
procedurally by the ``mnist1d`` package, and English prose from Python's own
``pydoc_data/topics.py`` (plus stdlib ``.py`` files as a code corpus) for character-level models.
"""

from __future__ import annotations

import functools
import pathlib
import sysconfig
from dataclasses import dataclass

import numpy as np

from lopt.errors import unknown_name

SPLITS = ("train", "inner_valid", "outer_valid", "test")
# Fractions of a pooled dataset given to each split (same order as SPLITS). Datasets with fewer
# than SMALL_DATASET rows (wine, iris, diabetes) give validation more, so that selecting on it
# means something.
SPLIT_FRACTIONS = (0.6, 0.1, 0.1, 0.2)
SMALL_SPLIT_FRACTIONS = (0.4, 0.2, 0.2, 0.2)
SMALL_DATASET = 500
_SPLIT_SEED = 0  # splits are fixed per dataset, so every task on it sees the same test set


@dataclass(frozen=True)
class Dataset:
    """Arrays for one supervised dataset, per split.

    Attributes:
        x: split -> inputs, ``(n_split, *input_shape)`` float32 (or int32 tokens).
        y: split -> targets, ``(n_split, *target_shape)``.
        num_classes: number of classes (0 for regression).
        index: split -> positions of its rows in the source data (disjoint across splits).
    """

    name: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    num_classes: int
    index: dict[str, np.ndarray]

    def size(self, split: str) -> int:
        return int(self.x[split].shape[0])


def _split_pool(name: str, x: np.ndarray, y: np.ndarray, num_classes: int) -> Dataset:
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(x))
    fractions = SMALL_SPLIT_FRACTIONS if len(x) < SMALL_DATASET else SPLIT_FRACTIONS
    bounds = np.cumsum([0, *(int(round(f * len(x))) for f in fractions)])
    bounds[-1] = len(x)
    xs, ys, index = {}, {}, {}
    for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        index[split] = perm[lo:hi]
        xs[split], ys[split] = x[index[split]], y[index[split]]
    return Dataset(name, xs, ys, num_classes, index)


def _standardize(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)


def _sklearn(loader: str) -> Dataset:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{loader}")()
    x = bunch.data.astype(np.float32)
    x = x / 16.0 if loader == "digits" else _standardize(x)
    y = bunch.target.astype(np.int32)
    return _split_pool(loader, x, y, int(y.max()) + 1)


def _sklearn_regression(loader: str) -> Dataset:
    """A bundled regression set: features and the scalar target standardized over the dataset."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{loader}")()
    x = _standardize(bunch.data.astype(np.float32))
    y = _standardize(bunch.target.astype(np.float32))
    return _split_pool(loader, x, y, 0)


PHOTOS = ("china.jpg", "flower.jpg")  # sklearn's bundled photographs, 427 × 640 RGB each


def _grayscale_photo(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image(name).astype(np.float32).mean(axis=-1) / 255.0


def _photo_patches(size: int = 8, per_photo: int = 1500) -> Dataset:
    """Grayscale ``size`` × ``size`` patches (pixels in [0, 1]) cut at random places (a fixed
    seed) from each of sklearn's two photographs, a temple and a flower; the class is the
    photograph."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for label, name in enumerate(PHOTOS):
        photo = _grayscale_photo(name)
        rows = rng.integers(0, photo.shape[0] - size + 1, per_photo)
        cols = rng.integers(0, photo.shape[1] - size + 1, per_photo)
        xs += [
            photo[r : r + size, c : c + size].reshape(-1) for r, c in zip(rows, cols, strict=True)
        ]
        ys += [label] * per_photo
    return _split_pool("photo-patches", np.stack(xs), np.asarray(ys, np.int32), len(PHOTOS))


def _photo_pixels(name: str = "flower.jpg", stride: int = 5) -> Dataset:
    """A photograph as a regression, the task of coordinate networks: a pixel's position (row
    and column scaled to [-1, 1]) → its grayscale intensity (standardized), every ``stride``-th
    pixel each way; the splits are random pixels."""
    photo = _grayscale_photo(name)[::stride, ::stride]
    rows, cols = np.meshgrid(
        np.linspace(-1, 1, photo.shape[0]), np.linspace(-1, 1, photo.shape[1]), indexing="ij"
    )
    x = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float32)
    return _split_pool(f"{name.split('.')[0]}-pixels", x, _standardize(photo.reshape(-1)), 0)


def _mnist1d() -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # procedural, deterministic (seed in the args)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int32)
    x_test, y_test = data["x_test"].astype(np.float32), data["y_test"].astype(np.int32)
    mean, std = x.mean(), x.std()
    pool = _split_pool("mnist1d", (x - mean) / std, y, 10)
    # MNIST-1D ships its own test set; the pooled test fraction joins the training split.
    xs, ys, index = dict(pool.x), dict(pool.y), dict(pool.index)
    for parts in (xs, ys, index):
        parts["train"] = np.concatenate([parts["train"], parts["test"]])
    xs["test"], ys["test"] = ((x_test - mean) / std).astype(np.float32), y_test
    index["test"] = len(x) + np.arange(len(x_test))  # rows of the separate test file
    return Dataset("mnist1d", xs, ys, 10, index)


def text_corpus(kind: str = "prose") -> str:
    """Raw text: ``prose`` (pydoc topics, English) or ``code`` (a few stdlib modules)."""
    if kind == "prose":
        from pydoc_data.topics import topics

        return "".join(topics[k] for k in sorted(topics))
    if kind == "code":
        stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
        names = ["argparse.py", "dataclasses.py", "functools.py", "json/encoder.py", "textwrap.py"]
        return "".join((stdlib / n).read_text(encoding="utf-8") for n in names)
    raise unknown_name("text corpus", kind, ["prose", "code"])


# Character vocabulary shared by both corpora: printable ASCII plus newline; others map to '?'.
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))


def encode_text(text: str) -> np.ndarray:
    """Map characters to ids in ``VOCAB`` (unknown characters become '?')."""
    table = np.full(256, VOCAB.index("?"), dtype=np.int32)
    for i, ch in enumerate(VOCAB):
        table[ord(ch)] = i
    codes = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
    return table[codes]


def _text(kind: str, seq_len: int = 64) -> Dataset:
    ids = encode_text(text_corpus(kind))
    n = (len(ids) - 1) // seq_len
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return _split_pool(f"text-{kind}", x, y, len(VOCAB))


_LOADERS = {
    "digits": lambda: _sklearn("digits"),
    "breast_cancer": lambda: _sklearn("breast_cancer"),
    "wine": lambda: _sklearn("wine"),
    "iris": lambda: _sklearn("iris"),
    "diabetes": lambda: _sklearn_regression("diabetes"),
    "photo-patches": _photo_patches,
    "flower-pixels": _photo_pixels,
    "mnist1d": _mnist1d,
    "text-prose": lambda: _text("prose"),
    "text-code": lambda: _text("code"),
}
DATASETS = tuple(_LOADERS)


@functools.cache
def load(name: str) -> Dataset:
    """Load a dataset by name (cached per process); see ``DATASETS``."""
    if name not in _LOADERS:
        raise unknown_name("dataset", name, _LOADERS)
    return _LOADERS[name]()
