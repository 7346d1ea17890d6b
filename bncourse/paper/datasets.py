"""MNIST for the course's experiments: a 10,000-digit subset shipped with the package (offline),
and a loader for the full 70,000-digit set that downloads only when asked.

    data = load_mnist()                 # the shipped subset: 8,000 train + 2,000 test digits
    data = load_mnist("full")           # MNIST's 60,000 + 10,000, downloaded once and cached

Both return an :class:`MNIST` with images flattened to (N, 784), scaled to [0, 1], and integer
labels (N,).  Provenance and licence of the subset: ``bncourse/paper/data/MNIST_LICENSE.md``; it is
rebuilt by ``tools/make_mnist_subset.py``.  Tests and notebooks use the subset only.
"""

import gzip
import hashlib
from importlib import resources
import io
import os
from pathlib import Path
import shutil
from typing import NamedTuple
import urllib.request

import numpy as np

SUBSET_FILE = "mnist_subset.npz"
SUBSET_SHA256 = "db69e53b81eedd205c67ce63f52d3566b268f77d113e64d150fc182ba3cb67e9"


class MNIST(NamedTuple):
    """x_train (N, 784), y_train (N,), x_test (M, 784), y_test (M,); images in [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def load_mnist(source="subset", dtype="float32", cache_dir=None):
    """MNIST images as (N, 784) arrays of ``dtype`` scaled to [0, 1] (pixel / 255), labels
    as int64 (N,).

    Args:
        source: ``"subset"``, the 10,000 digits shipped in the package (8,000 train, 2,000
            test, all drawn from MNIST's training file; no network); or ``"full"``, MNIST's
            60,000 training and 10,000 test digits, downloaded on first use into
            ``cache_dir`` and checked against their SHA-256 digests.
        dtype: float dtype of the images.
        cache_dir: where ``"full"`` keeps its files (default :func:`default_cache_dir`).
    """
    if source == "subset":
        images = _read_subset()
    elif source == "full":
        images = _read_full(cache_dir)
    else:
        raise ValueError(f"source must be 'subset' or 'full', got {source!r}")
    scale = lambda x: (x.reshape(len(x), -1) / np.float64(255)).astype(dtype)
    return MNIST(scale(images["x_train"]), images["y_train"].astype(np.int64),
                 scale(images["x_test"]), images["y_test"].astype(np.int64), source)


def subset_path():
    """Path of the shipped subset file (inside the installed package)."""
    return Path(str(resources.files("bncourse.paper") / "data" / SUBSET_FILE))


def _read_subset():
    raw = subset_path().read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SUBSET_SHA256:
        raise OSError(f"{SUBSET_FILE} is corrupt: SHA-256 {digest}, expected {SUBSET_SHA256}")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}


# ----------------------------------------------------------------------------- IDX files

# IDX: two zero bytes, a type code, the number of dimensions; then each dimension as a
# big-endian uint32; then the values, big-endian, C order.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data):
    """The array stored in an IDX file's bytes (gzip-compressed or not)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise ValueError("not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    count = int(np.prod(shape))
    if len(data) != header + count * dtype.itemsize:
        raise ValueError(f"IDX size mismatch: shape {shape} needs {count * dtype.itemsize} "
                         f"bytes of data, got {len(data) - header}")
    return np.frombuffer(data, dtype, count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path):
    """:func:`parse_idx` of a file (``.gz`` or plain)."""
    return parse_idx(Path(path).read_bytes())


# ----------------------------------------------------------------------------- the full set
# Used only when asked for (source="full" / the --full-data flag); never by tests or CI.

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",      # torchvision's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
)
FULL_FILES = {  # name: (key, SHA-256 of the .gz file as published)
    "train-images-idx3-ubyte.gz": ("x_train",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": ("y_train",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": ("x_test",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": ("y_test",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}


def default_cache_dir():
    """``$BNCOURSE_DATA``, else ``$XDG_CACHE_HOME/bncourse/mnist``, else ``~/.cache/bncourse/mnist``."""
    if os.environ.get("BNCOURSE_DATA"):
        return Path(os.environ["BNCOURSE_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bncourse" / "mnist"


def fetch_full(cache_dir=None, mirrors=None):
    """Download the four MNIST files into ``cache_dir`` unless a verified copy is there;
    returns the directory.  Each file must match its SHA-256 digest, or the next of
    ``mirrors`` (default :data:`MIRRORS`) is tried; a file that matches none raises
    ``OSError``."""
    mirrors = MIRRORS if mirrors is None else mirrors
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name, (_, sha) in FULL_FILES.items():
        target = cache / name
        if target.exists() and _sha256_file(target) == sha:
            continue
        errors = []
        for mirror in mirrors:
            part = target.with_name(name + ".part")
            try:
                with urllib.request.urlopen(mirror + name, timeout=60) as r, open(part, "wb") as f:
                    shutil.copyfileobj(r, f)
                got = _sha256_file(part)
                if got != sha:
                    raise OSError(f"SHA-256 mismatch: {got}")
                part.replace(target)
                break
            except OSError as exc:       # URLError is an OSError
                errors.append(f"{mirror}{name}: {exc}")
                part.unlink(missing_ok=True)
        else:
            raise OSError("could not download a verified copy of " + name + ":\n  " + "\n  ".join(errors))
    return cache


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_full(cache_dir):
    cache = fetch_full(cache_dir)
    return {key: read_idx(cache / name) for name, (key, _) in FULL_FILES.items()}
