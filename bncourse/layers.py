"""Stateful layers with explicit forward/backward, written once for every array backend.

A backend subclasses each layer with its array module ``xp`` (where parameters and buffers
live) and its array-type guard (``bncourse.numpy.BatchNorm`` is
``class BatchNorm(NumPyLayer, layers.BatchNorm)``).  Conventions follow ``torch.nn``:
``training`` is an explicit flag switched by ``train()``/``eval()``; parameters and buffers
are plain attributes; a failed ``forward`` (bad input) changes no state.  The layers with
running statistics share :class:`RunningStatsLayer`, whose update is
:func:`bncourse.core.running.running_stats`.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from . import functional as _functional
from .core.running import blend, momentum_weight, running_stats
from .core.validation import check_eps, check_input_channels, check_momentum, check_positive_int

PARAM_DTYPES = ("float32", "float64")


def _check_param_dtype(dtype, xp):
    name = np.dtype(dtype).name
    if name not in PARAM_DTYPES:
        raise ValueError(
            f"parameters and running statistics are kept in float32 or float64, got {name} "
            "(float16 inputs are accepted and computed in float32)"
        )
    return getattr(xp, name)


class Layer:
    """Base: ``forward(x)`` caches what ``backward(dy)`` needs; ``backward`` returns dx and
    stores the parameter gradients in ``grads`` (name → array), overwriting earlier ones."""

    xp: Any = None            # the array module, set by the backend's subclass
    param_names: tuple = ()
    # (dy, cache) -> (dx, *parameter gradients in param_names order)
    backward_function: Callable[[Any, Any], tuple[Any, ...]] = staticmethod(_functional.batch_norm_backward)

    @staticmethod
    def unavailable():
        """The exception saying why ``xp`` cannot be used here, or None (it can)."""
        return None

    @staticmethod
    def check_array_type(x):
        """The backend's guard: raise TypeError for another library's arrays."""

    def __init__(self):
        problem = self.unavailable()
        if problem is not None:
            raise problem
        self.training = True
        self.grads = {}
        self._cache = None

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        return self.forward(x)

    def parameters(self):
        """name → array for the parameters this layer has (none when not affine)."""
        return {n: getattr(self, n) for n in self.param_names if getattr(self, n) is not None}

    def _cached(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def _store_grads(self, *grads):
        self.grads = {n: g for n, g in zip(self.param_names, grads, strict=True) if g is not None}

    def backward(self, dy):
        """dx for the last ``forward``; the parameter gradients go to ``grads``."""
        self.check_array_type(dy)
        dx, *grads = self.backward_function(dy, self._cached())
        self._store_grads(*grads)
        return dx


class RunningStatsLayer(Layer):
    """Base of the layers with running statistics (:class:`BatchNorm`, :class:`BatchRenorm`):
    affine parameters ``gamma``/``beta``, float32/float64 buffers, ``num_batches_tracked``."""

    param_names = ("gamma", "beta")

    def _init_state(self, num_features, eps, momentum, affine, dtype, buffers):
        """``buffers``: name → initial value (0 or 1) of each running statistic."""
        check_positive_int(num_features, "num_features")
        check_eps(eps)
        check_momentum(momentum)
        xp = self.xp
        dt = _check_param_dtype(dtype, xp)
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        self.gamma = xp.ones(num_features, dtype=dt) if affine else None
        self.beta = xp.zeros(num_features, dtype=dt) if affine else None
        for name, value in buffers.items():
            setattr(self, name, xp.full(num_features, value, dtype=dt))
        self.num_batches_tracked = 0

    def _assign(self, name, value):
        """Write a float64 statistic into buffer ``name``, in the buffer's dtype."""
        buffer = getattr(self, name)
        buffer[...] = value.astype(buffer.dtype)

    def _float64(self, name):
        return getattr(self, name).astype("float64")



class BatchNorm(RunningStatsLayer):
    """Batch normalization over axis 1 of (N, C, *spatial) inputs, 2-D to 5-D.

    Training: normalize with the batch mean and *biased* variance; if
    ``track_running_stats``, update
        running_mean ← (1 − f)·running_mean + f·mean,
        running_var  ← (1 − f)·running_var  + f·var·m/(m − 1)   (unbiased),
    with f = momentum (the weight of the *new* value), or f = 1/num_batches_tracked
    (a cumulative average) when ``momentum is None``; ``num_batches_tracked`` counts the
    updates.  Eval: normalize with the running statistics (or with the batch's when
    ``track_running_stats=False``).  Exactly ``torch.nn.BatchNorm{1,2,3}d``'s rules.

    Parameters ``gamma`` (ones), ``beta`` (zeros), or None when ``affine=False``; gradients
    in ``grads['gamma']``, ``grads['beta']`` after ``backward``.  Parameters and running
    statistics are float32 (default) or float64, never float16.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype="float32"):
        super().__init__()
        buffers = {"running_mean": 0, "running_var": 1} if track_running_stats else {}
        self._init_state(num_features, eps, momentum, affine, dtype, buffers)
        self.track_running_stats = track_running_stats
        if not track_running_stats:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = 0

    def forward(self, x):
        self.check_array_type(x)
        check_input_channels(x, self.num_features)
        check_eps(self.eps)              # attributes may have been changed since __init__
        check_momentum(self.momentum)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            y, cache = _functional.batch_norm_forward(x, self.gamma, self.beta, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(cache)
        else:
            y, cache = _functional.batch_norm_frozen_forward(x, self.running_mean, self.running_var,
                                                      self.gamma, self.beta, self.eps)
        self._cache = cache
        return y

    def _update_running_stats(self, cache):
        f = momentum_weight(self.momentum, self.num_batches_tracked)   # None: 1/(n + 1)
        self.num_batches_tracked += 1
        mean, var = running_stats(self._float64("running_mean"), self._float64("running_var"),
                                  cache.mean, cache.var, cache.count, f)
        self._assign("running_mean", mean)
        self._assign("running_var", var)

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats})")


class _ElementwiseAffineNorm(Layer):
    """Shared by LayerNorm and RMSNorm: statistics over the trailing ``normalized_shape``."""

    def __init__(self, normalized_shape, eps, elementwise_affine, bias, dtype):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        for n in shape:
            check_positive_int(n, "normalized_shape entries")
        if eps is not None:
            check_eps(eps, False, type(self).__name__)
        dt = _check_param_dtype(dtype, self.xp)
        self.normalized_shape, self.eps = shape, eps
        self.weight = self.xp.ones(shape, dtype=dt) if elementwise_affine else None
        self.bias = self.xp.zeros(shape, dtype=dt) if elementwise_affine and bias else None


class LayerNorm(_ElementwiseAffineNorm):
    """Layer norm (``torch.nn.LayerNorm``): each sample over its trailing dims."""

    param_names = ("weight", "bias")

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype="float32"):
        super().__init__(normalized_shape, eps, elementwise_affine, bias, dtype)

    def forward(self, x):
        self.check_array_type(x)
        y, self._cache = _functional.layer_norm_forward(x, self.normalized_shape, self.weight,
                                                 self.bias, self.eps)
        return y

    backward_function = staticmethod(_functional.layer_norm_backward)


class RMSNorm(_ElementwiseAffineNorm):
    """RMS norm (``torch.nn.RMSNorm``): x / sqrt(mean(x²) + eps) · weight; eps=None means
    the machine epsilon of the input's dtype."""

    param_names = ("weight",)

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype="float32"):
        super().__init__(normalized_shape, eps, elementwise_affine, False, dtype)

    def forward(self, x):
        self.check_array_type(x)
        y, self._cache = _functional.rms_norm_forward(x, self.normalized_shape, self.weight, self.eps)
        return y

    backward_function = staticmethod(_functional.rms_norm_backward)


class _ChannelAffineNorm(Layer):
    """Shared by GroupNorm and InstanceNorm: per-channel weight and bias."""

    param_names = ("weight", "bias")

    def __init__(self, num_channels, eps, affine, dtype):
        super().__init__()
        check_positive_int(num_channels, "num_channels")
        check_eps(eps, False, type(self).__name__)
        dt = _check_param_dtype(dtype, self.xp)
        self.num_channels, self.eps, self.affine = num_channels, eps, affine
        self.weight = self.xp.ones(num_channels, dtype=dt) if affine else None
        self.bias = self.xp.zeros(num_channels, dtype=dt) if affine else None

    backward_function = staticmethod(_functional.alternative_backward)


class GroupNorm(_ChannelAffineNorm):
    """Group norm (``torch.nn.GroupNorm``): each (sample, group of channels) over the
    group's channels and space.  Same in training and eval."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype="float32"):
        check_positive_int(num_groups, "num_groups")
        super().__init__(num_channels, eps, affine, dtype)
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups

    def forward(self, x):
        self.check_array_type(x)
        check_input_channels(x, self.num_channels)
        y, self._cache = _functional.group_norm_forward(x, self.num_groups, self.weight, self.bias, self.eps)
        return y


class InstanceNorm(_ChannelAffineNorm):
    """Instance norm (``torch.nn.InstanceNorm{1,2,3}d`` with the default
    ``track_running_stats=False``): each (sample, channel) over space, in training and eval.
    ``affine=False`` by default, as in PyTorch."""

    def __init__(self, num_features, eps=1e-5, affine=False, dtype="float32"):
        super().__init__(num_features, eps, affine, dtype)

    def forward(self, x):
        self.check_array_type(x)
        check_input_channels(x, self.num_channels, 3, 5)
        y, self._cache = _functional.instance_norm_forward(x, self.weight, self.bias, self.eps)
        return y


class BatchRenorm(RunningStatsLayer):
    """Batch renormalization (Ioffe 2017).  Training: x̂ = (x − μ_B)/σ_B · r + d with
    r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max) held constant in
    the backward pass, then μ ← μ + momentum·(μ_B − μ), σ ← σ + momentum·(σ_B − σ), where
    σ_B = sqrt(biased var + eps) and ``running_std`` σ is a standard deviation (it already
    contains eps).  Eval: y = γ·(x − μ)/σ + β.  ``r_max``/``d_max`` are attributes: the
    paper starts at 1 and 0 (plain batch norm) and relaxes them during training.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.01, r_max=3.0, d_max=5.0,
                 affine=True, dtype="float32"):
        super().__init__()
        check_momentum(momentum, allow_none=False)     # no cumulative average here
        self._init_state(num_features, eps, momentum, affine, dtype,
                         {"running_mean": 0, "running_std": 1})
        self.r_max, self.d_max = r_max, d_max

    def forward(self, x):
        self.check_array_type(x)
        check_input_channels(x, self.num_features)
        if self.training:
            y, cache, stats = _functional.batch_renorm_forward(
                x, self.gamma, self.beta, self.running_mean, self.running_std,
                self.r_max, self.d_max, self.eps)
            self.num_batches_tracked += 1
            # the running *std* (not var) moves towards σ_B: Ioffe's rule, f = momentum
            self._assign("running_mean", blend(self._float64("running_mean"), stats.mean,
                                               self.momentum))
            self._assign("running_std", blend(self._float64("running_std"), stats.std,
                                              self.momentum))
            self.last_stats = stats
        else:
            # σ already contains eps, so normalize by σ itself (eps = 0, allowed in eval)
            y, cache = _functional.batch_norm_frozen_forward(x, self.running_mean,
                                                      self._float64("running_std") ** 2,
                                                      self.gamma, self.beta, 0.0)
        self._cache = cache
        return y


LAYERS = (BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm, BatchRenorm)
