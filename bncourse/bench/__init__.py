"""``python -m bncourse.bench``: the CPU benchmark (:mod:`bncourse.bench.cpu`) and, where
CuPy sees a GPU, the GPU one (:mod:`bncourse.bench.gpu`)."""

from .cpu import DEFAULT_SHAPES, main, measure, ratios

__all__ = ["DEFAULT_SHAPES", "main", "measure", "ratios"]
