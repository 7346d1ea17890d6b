"""bncourse.paper.datasets: the shipped MNIST subset (shape, range, labels, checksums, no leaks
between the splits), the IDX parser on tiny files written here, and the full-set download
path against a local file:// "mirror" (no network)."""

import gzip
import hashlib

import numpy as np
import pytest

from bncourse.paper import datasets
from bncourse.paper.datasets import load_mnist, parse_idx, read_idx

CONTENT_SHA256 = "2d93be06b353353dd5a436524b9d9693fa99d4fce720589d051aaca1b2f86494"


@pytest.fixture(scope="module")
def subset():
    return load_mnist()


def test_subset_shapes_range_and_labels(subset):
    assert subset.source == "subset"
    assert subset.x_train.shape == (8000, 784) and subset.x_test.shape == (2000, 784)
    assert subset.y_train.shape == (8000,) and subset.y_test.shape == (2000,)
    assert subset.x_train.dtype == np.float32 and subset.y_train.dtype == np.int64
    for x in (subset.x_train, subset.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)  # whole grey levels
    for y in (subset.y_train, subset.y_test):
        assert set(np.unique(y)) == set(range(10))
    # the first 10,000 images of MNIST's training file, split 80/20 within each class
    counts = np.bincount(subset.y_train, minlength=10) + np.bincount(subset.y_test, minlength=10)
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    np.testing.assert_array_equal(np.bincount(subset.y_test), np.round(0.2 * counts))


def test_subset_file_and_content_checksums():
    raw = datasets.subset_path().read_bytes()
    assert hashlib.sha256(raw).hexdigest() == datasets.SUBSET_SHA256
    with np.load(datasets.subset_path()) as z:
        assert {k: z[k].dtype for k in z.files} == dict.fromkeys(
            ["x_train", "y_train", "x_test", "y_test"], np.dtype(np.uint8))
        content = b"".join(z[k].tobytes() for k in sorted(z.files))
    assert hashlib.sha256(content).hexdigest() == CONTENT_SHA256


def test_no_image_is_in_both_splits_or_twice(subset):
    keys = [x.tobytes() for x in np.round(np.concatenate([subset.x_train, subset.x_test]) * 255).astype(np.uint8)]
    assert len(set(keys)) == len(keys) == 10000


def test_float64_and_bad_source(subset):
    x64 = load_mnist(dtype="float64").x_test
    assert x64.dtype == np.float64
    np.testing.assert_allclose(x64, subset.x_test, rtol=1e-7)
    with pytest.raises(ValueError, match="source must be"):
        load_mnist("cifar")


def test_a_corrupt_subset_file_is_refused(monkeypatch):
    monkeypatch.setattr(datasets, "SUBSET_SHA256", "0" * 64)
    with pytest.raises(OSError, match="corrupt"):
        load_mnist()


# ----------------------------------------------------------------------------- IDX


def idx_bytes(array, code):
    """An IDX file: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_idx_images_and_labels(tmp_path, rng):
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "img.idx").write_bytes(idx_bytes(images, 0x08))
    (tmp_path / "lab.idx.gz").write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    got = read_idx(tmp_path / "img.idx")
    assert got.shape == (3, 28, 28) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lab.idx.gz"), labels)


@pytest.mark.parametrize("dtype,code", [(">i2", 0x0B), (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E)])
def test_parse_idx_wider_types_come_back_in_native_order(rng, dtype, code):
    a = (rng.standard_normal((2, 3)) * 1000).astype(dtype)
    got = parse_idx(idx_bytes(a, code))
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_parse_idx_refuses_bad_files():
    good = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3), 0x08)
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(good[:-1])
    with pytest.raises(ValueError, match="truncated"):
        parse_idx(good[:6])


# ----------------------------------------------------------------------------- full set


@pytest.fixture
def tiny_mirror(tmp_path, monkeypatch, rng):
    """A local directory standing in for a download mirror, with tiny MNIST-shaped files
    whose digests replace the real ones."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {"x_train": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 5, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 2, dtype=np.uint8)}
    files = {}
    for name, (key, _) in datasets.FULL_FILES.items():
        blob = gzip.compress(idx_bytes(arrays[key], 0x08))
        (mirror / name).write_bytes(blob)
        files[name] = (key, hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(datasets, "FULL_FILES", files)
    monkeypatch.setattr(datasets, "MIRRORS", (mirror.as_uri() + "/",))
    return mirror, arrays


def test_full_loader_downloads_verifies_and_caches(tmp_path, tiny_mirror):
    mirror, arrays = tiny_mirror
    cache = tmp_path / "cache"
    data = load_mnist("full", cache_dir=cache)
    assert data.source == "full" and data.x_train.shape == (5, 784) and data.x_test.shape == (2, 784)
    np.testing.assert_allclose(data.x_train * 255, arrays["x_train"].reshape(5, -1), atol=1e-4)
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])
    # cached: a second load needs no mirror at all
    for f in mirror.iterdir():
        f.unlink()
    np.testing.assert_array_equal(load_mnist("full", cache_dir=cache).y_train, arrays["y_train"])


def test_full_loader_rejects_a_corrupt_download_and_tries_the_next_mirror(tmp_path, tiny_mirror):
    mirror, _ = tiny_mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in mirror.iterdir():
        (bad / f.name).write_bytes(b"not what was published")
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="SHA-256 mismatch"):
        datasets.fetch_full(cache, mirrors=(bad.as_uri() + "/",))
    assert not any(cache.iterdir())      # nothing unverified is left behind
    datasets.fetch_full(cache, mirrors=(bad.as_uri() + "/", mirror.as_uri() + "/"))
    assert sorted(p.name for p in cache.iterdir()) == sorted(datasets.FULL_FILES)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BNCOURSE_DATA", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path
    monkeypatch.delenv("BNCOURSE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path / "bncourse" / "mnist"
