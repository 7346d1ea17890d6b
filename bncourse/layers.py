"""Stateful layers with explicit forward/backward, written once for every array backend.

A backend binds these classes to its array module (``bind(numpy)``), which decides where
parameters and buffers live.  Conventions follow ``torch.nn``: ``training`` is an explicit
flag switched by ``train()``/``eval()``; parameters and buffers are plain attributes; a
failed ``forward`` (bad input) changes no state.
"""

import numpy as np

from . import functional as _api
from .core import closed_form as generic
from .core.validation import check_eps, check_input_channels, check_momentum

PARAM_DTYPES = ("float32", "float64")


def _check_param_dtype(dtype, xp):
    name = np.dtype(dtype).name
    if name not in PARAM_DTYPES:
        raise ValueError(
            f"parameters and running statistics are kept in float32 or float64, got {name} "
            "(float16 inputs are accepted and computed in float32)"
        )
    return getattr(xp, name)


def _check_count(n, what):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")


class Layer:
    """Base: ``forward(x)`` caches what ``backward(dy)`` needs; ``backward`` returns dx and
    stores the parameter gradients in ``grads`` (name → array), overwriting earlier ones."""

    xp = None                 # the array module, set by ``bind``
    unavailable = None        # () -> exception saying why ``xp`` cannot be used, or None
    param_names = ()

    def __init__(self):
        problem = None if self.unavailable is None else self.unavailable()
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
        self.grads = {n: g for n, g in zip(self.param_names, grads) if g is not None}


class BatchNorm(Layer):
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

    param_names = ("gamma", "beta")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype="float32"):
        super().__init__()
        _check_count(num_features, "num_features")
        check_eps(eps)
        check_momentum(momentum)
        xp = self.xp
        dt = _check_param_dtype(dtype, xp)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.gamma = xp.ones(num_features, dtype=dt) if affine else None
        self.beta = xp.zeros(num_features, dtype=dt) if affine else None
        if track_running_stats:
            self.running_mean = xp.zeros(num_features, dtype=dt)
            self.running_var = xp.ones(num_features, dtype=dt)
            self.num_batches_tracked = 0
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = 0

    def forward(self, x):
        check_input_channels(x, self.num_features)
        check_eps(self.eps)              # attributes may have been changed since __init__
        check_momentum(self.momentum)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            y, cache = _api.batch_norm_forward(x, self.gamma, self.beta, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(cache)
        else:
            y, cache = generic.batch_norm_inference(x, self.running_mean, self.running_var,
                                                    self.gamma, self.beta, self.eps)
        self._cache = cache
        return y

    def _update_running_stats(self, cache):
        self.num_batches_tracked += 1
        f = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
        m = cache.count
        unbiased_var = cache.var * (m / (m - 1))
        _ema_(self.running_mean, cache.mean, f)
        _ema_(self.running_var, unbiased_var, f)

    def backward(self, dy):
        dx, dgamma, dbeta = _api.batch_norm_backward(dy, self._cached())
        self._store_grads(dgamma, dbeta)
        return dx

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats})")


def _ema_(buffer, new, f):
    """In place: buffer ← (1 − f)·buffer + f·new, computed in float64."""
    old = buffer.astype("float64")
    buffer[...] = ((1.0 - f) * old + f * new).astype(buffer.dtype)


class _ElementwiseAffineNorm(Layer):
    """Shared by LayerNorm and RMSNorm: statistics over the trailing ``normalized_shape``."""

    def __init__(self, normalized_shape, eps, elementwise_affine, bias, dtype):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        for n in shape:
            _check_count(n, "normalized_shape entries")
        if eps is not None:
            check_eps(eps)
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
        y, self._cache = _api.layer_norm_forward(x, self.normalized_shape, self.weight,
                                                 self.bias, self.eps)
        return y

    def backward(self, dy):
        dx, dw, db = _api.layer_norm_backward(dy, self._cached())
        self._store_grads(dw, db)
        return dx


class RMSNorm(_ElementwiseAffineNorm):
    """RMS norm (``torch.nn.RMSNorm``): x / sqrt(mean(x²) + eps) · weight; eps=None means
    the machine epsilon of the input's dtype."""

    param_names = ("weight",)

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype="float32"):
        super().__init__(normalized_shape, eps, elementwise_affine, False, dtype)

    def forward(self, x):
        y, self._cache = _api.rms_norm_forward(x, self.normalized_shape, self.weight, self.eps)
        return y

    def backward(self, dy):
        dx, dw = _api.rms_norm_backward(dy, self._cached())
        self._store_grads(dw)
        return dx


class _ChannelAffineNorm(Layer):
    """Shared by GroupNorm and InstanceNorm: per-channel weight and bias."""

    param_names = ("weight", "bias")

    def __init__(self, num_channels, eps, affine, dtype):
        super().__init__()
        _check_count(num_channels, "num_channels")
        check_eps(eps)
        dt = _check_param_dtype(dtype, self.xp)
        self.num_channels, self.eps, self.affine = num_channels, eps, affine
        self.weight = self.xp.ones(num_channels, dtype=dt) if affine else None
        self.bias = self.xp.zeros(num_channels, dtype=dt) if affine else None

    def backward(self, dy):
        dx, dw, db = _api.norm_backward(dy, self._cached())
        self._store_grads(dw, db)
        return dx


class GroupNorm(_ChannelAffineNorm):
    """Group norm (``torch.nn.GroupNorm``): each (sample, group of channels) over the
    group's channels and space.  Same in training and eval."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype="float32"):
        _check_count(num_groups, "num_groups")
        super().__init__(num_channels, eps, affine, dtype)
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups

    def forward(self, x):
        check_input_channels(x, self.num_channels)
        y, self._cache = _api.group_norm_forward(x, self.num_groups, self.weight, self.bias, self.eps)
        return y


class InstanceNorm(_ChannelAffineNorm):
    """Instance norm (``torch.nn.InstanceNorm{1,2,3}d`` with the default
    ``track_running_stats=False``): each (sample, channel) over space, in training and eval.
    ``affine=False`` by default, as in PyTorch."""

    def __init__(self, num_features, eps=1e-5, affine=False, dtype="float32"):
        super().__init__(num_features, eps, affine, dtype)

    def forward(self, x):
        check_input_channels(x, self.num_channels, 3, 5)
        y, self._cache = _api.instance_norm_forward(x, self.weight, self.bias, self.eps)
        return y


class BatchRenorm(Layer):
    """Batch renormalization (Ioffe 2017).  Training: x̂ = (x − μ_B)/σ_B · r + d with
    r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max) held constant in
    the backward pass, then μ ← μ + momentum·(μ_B − μ), σ ← σ + momentum·(σ_B − σ), where
    σ_B = sqrt(biased var + eps) and ``running_std`` σ is a standard deviation (it already
    contains eps).  Eval: y = γ·(x − μ)/σ + β.  ``r_max``/``d_max`` are attributes: the
    paper starts at 1 and 0 (plain batch norm) and relaxes them during training.
    """

    param_names = ("gamma", "beta")

    def __init__(self, num_features, eps=1e-5, momentum=0.01, r_max=3.0, d_max=5.0,
                 affine=True, dtype="float32"):
        super().__init__()
        _check_count(num_features, "num_features")
        check_eps(eps)
        check_momentum(momentum)
        if momentum is None:
            raise ValueError("BatchRenorm needs a numeric momentum, got None")
        xp = self.xp
        dt = _check_param_dtype(dtype, xp)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.r_max, self.d_max, self.affine = r_max, d_max, affine
        self.gamma = xp.ones(num_features, dtype=dt) if affine else None
        self.beta = xp.zeros(num_features, dtype=dt) if affine else None
        self.running_mean = xp.zeros(num_features, dtype=dt)
        self.running_std = xp.ones(num_features, dtype=dt)
        self.num_batches_tracked = 0

    def forward(self, x):
        check_input_channels(x, self.num_features)
        if self.training:
            y, cache, stats = _api.batch_renorm_forward(
                x, self.gamma, self.beta, self.running_mean, self.running_std,
                self.r_max, self.d_max, self.eps)
            self.num_batches_tracked += 1
            _ema_(self.running_mean, stats.mean, self.momentum)
            _ema_(self.running_std, stats.std, self.momentum)
            self.last_stats = stats
        else:
            var = self.running_std.astype("float64") ** 2
            # σ already contains eps, so normalize by σ itself (eps = 0 here)
            y, cache = generic.batch_norm_inference(x, self.running_mean, var, self.gamma,
                                                    self.beta, 0.0)
        self._cache = cache
        return y

    def backward(self, dy):
        dx, dgamma, dbeta = _api.norm_backward(dy, self._cached())
        self._store_grads(dgamma, dbeta)
        return dx


LAYERS = (BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm, BatchRenorm)


def bind(xp, module_name, unavailable=None):
    """Subclasses of every layer whose parameters and buffers live in array module ``xp``;
    ``unavailable``, if given, is called when a layer is constructed and returns the
    exception to raise (e.g. CuPy or its GPU missing) or None."""
    unavailable = None if unavailable is None else staticmethod(unavailable)
    return {cls.__name__: type(cls.__name__, (cls,), {"xp": xp, "unavailable": unavailable,
                                                      "__module__": module_name,
                                                      "__doc__": cls.__doc__})
            for cls in LAYERS}
