"""Teaching modules of the book: ``reference`` (the staged graph), ``stats`` (mean and
variance four ways), ``gradcheck``, ``conventions``, ``accuracy``, ``recalibration``,
``tolerance`` (the one tolerance helper of tests and notebooks), ``display``
(:func:`show_source`, package code shown from the object itself) and ``labs`` (checkers
that name a learner's mistake; public path ``bncourse.labs``) and ``landscape`` (chapter 15's
measurements: smoothness along the gradient, per-layer statistics, effective learning rate;
needs torch)."""

from .display import show_source

__all__ = ["show_source"]
