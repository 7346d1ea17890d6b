"""The public functional API shared by the array backends (``bncourse.numpy``, ``bncourse.cupy``).

Each function validates its inputs (``ValueError``/``TypeError`` naming the bad value) and then
runs either the fast kernels of the input's array library or the generic array-API path.
:func:`bncourse.kernels.select` is the one place that choice is made.

Conventions (PyTorch's): channels on axis 1, inputs (N, C, *spatial) with 2 to 5 dimensions;
normalization by the *biased* batch variance; outputs in the input's dtype; float16 inputs are
computed in float32 or wider.
"""

from collections.abc import Sequence
import math
from typing import Any

from .core import alternatives, closed_form
from .core.validation import (
    check_array,
    check_batch_size,
    check_channel_vector,
    check_eps,
    check_grad,
    check_ndim,
    check_normalized_shape,
    check_param_shape,
    check_positive_int,
)
from .kernels import select

fast_kernels = select     # the one selector (tests may monkeypatch this name)

Array = Any               # a NumPy or CuPy array (the backends' modules check which)
Shape = int | Sequence[int]


def _check_batch_norm_inputs(x: Array, eps: float, training: bool = True, op: str = "batch_norm",
                             **vectors: Array | None) -> None:
    check_array(x)
    check_ndim(x, 2, 5)
    check_eps(eps, training, op)
    for name, v in vectors.items():
        check_channel_vector(v, x.shape[1], name)


# ----------------------------------------------------------------------------- batch norm


def batch_norm_forward(x: Array, gamma: Array | None = None, beta: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Training-mode batch norm with the batch's statistics.

    For each channel c, over the m = N·prod(spatial) values of x[:, c]:
        μ = mean,  σ² = (1/m) Σ (x − μ)²  (biased),  x̂ = (x − μ)/sqrt(σ² + ε),  y = γ·x̂ + β.

    Args:
        x: (N, C, *spatial) float16/32/64 array, 2-D to 5-D.
        gamma, beta: (C,) arrays or None (no scale / no shift).
        eps: added to the variance, > 0.
    Returns:
        (y, cache): y has x's shape and dtype; pass ``cache`` to :func:`batch_norm_backward`.
        ``cache.mean`` and ``cache.var`` are the batch's per-channel mean and biased
        variance (float64, (C,)); ``cache.count`` is m.
    """
    _check_batch_norm_inputs(x, eps, gamma=gamma, beta=beta)
    check_batch_size(x.shape, closed_form.batch_axes(x.ndim))
    kernels = fast_kernels(x)
    if kernels is not None:
        return kernels.forward(x, gamma, beta, eps)
    return closed_form.batch_norm_forward(x, gamma, beta, eps)


def batch_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Gradients of training-mode batch norm: (dx, dgamma, dbeta).

    With k = γ/sqrt(σ² + ε) per channel and means over the m values of the channel,
        dx = k · (dy − mean(dy) − x̂ · mean(dy · x̂)),   dγ = Σ dy · x̂,   dβ = Σ dy.
    dgamma / dbeta are None where the forward had no gamma / beta.
    """
    check_grad(dy, cache.shape)
    if isinstance(cache, closed_form.NormCache):
        return closed_form.norm_backward(dy, cache)
    return cache.backward(dy)


def batch_norm_inference(x: Array, running_mean: Array, running_var: Array, gamma: Array | None = None,
                         beta: Array | None = None, eps: float = 1e-5) -> Array:
    """Eval-mode batch norm with fixed statistics (Algorithm 2 of Ioffe & Szegedy 2015):

        y = γ · (x − running_mean) / sqrt(running_var + ε) + β.

    x: (N, C, *spatial); running_mean, running_var, gamma, beta: (C,); eps >= 0.  Returns y.
    """
    y, _ = batch_norm_frozen_forward(x, running_mean, running_var, gamma, beta, eps)
    return y


def batch_norm_frozen_forward(x: Array, running_mean: Array, running_var: Array,
                              gamma: Array | None = None, beta: Array | None = None,
                              eps: float = 1e-5) -> tuple[Array, Any]:
    """:func:`batch_norm_inference` that also returns the cache of its backward (frozen-BN
    fine-tuning: μ, σ² are constants), for the eval mode of the layers.  Returns (y, cache)."""
    _check_batch_norm_inputs(x, eps, False, running_mean=running_mean, running_var=running_var,
                             gamma=gamma, beta=beta)
    return closed_form.batch_norm_inference(x, running_mean, running_var, gamma, beta, eps)


# ----------------------------------------------------------------------------- alternatives


def layer_norm_forward(x: Array, normalized_shape: Shape, weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5) -> tuple[Array, Any]:
    """Layer norm: each sample normalized over its trailing ``normalized_shape`` dims
    (biased variance); weight/bias elementwise with shape ``normalized_shape``.
    Returns (y, cache)."""
    check_array(x)
    shape = check_normalized_shape(x, normalized_shape)
    check_eps(eps, False, "layer_norm")
    check_param_shape(weight, shape, "weight")
    check_param_shape(bias, shape, "bias")
    return alternatives.layer_norm_forward(x, shape, weight, bias, eps)


def rms_norm_forward(x: Array, normalized_shape: Shape, weight: Array | None = None,
                     eps: float | None = None) -> tuple[Array, Any]:
    """RMS norm: x / sqrt(mean(x²) + eps) over the trailing dims, times weight.
    ``eps=None``: the machine epsilon of x's dtype (PyTorch's default).  Returns (y, cache)."""
    check_array(x)
    shape = check_normalized_shape(x, normalized_shape)
    if eps is not None:
        check_eps(eps, False, "rms_norm")
    check_param_shape(weight, shape, "weight")
    return alternatives.rms_norm_forward(x, shape, weight, eps)


def instance_norm_forward(x: Array, weight: Array | None = None, bias: Array | None = None,
                          eps: float = 1e-5) -> tuple[Array, Any]:
    """Instance norm: each (sample, channel) normalized over its spatial axes.
    x: (N, C, *spatial) 3-D to 5-D; weight, bias: (C,).  Returns (y, cache)."""
    check_array(x)
    check_ndim(x, 3, 5)
    check_eps(eps, False, "instance_norm")
    if math.prod(x.shape[2:]) <= 1:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input size {tuple(x.shape)}"
        )
    check_channel_vector(weight, x.shape[1], "weight")
    check_channel_vector(bias, x.shape[1], "bias")
    return alternatives.instance_norm_forward(x, weight, bias, eps)


def group_norm_forward(x: Array, num_groups: int, weight: Array | None = None, bias: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, Any]:
    """Group norm: each (sample, group of C/num_groups channels) normalized over the group's
    channels and space.  x: (N, C, *spatial); weight, bias: (C,).  Returns (y, cache)."""
    check_array(x)
    check_ndim(x, 2, 5)
    check_eps(eps, False, "group_norm")
    check_positive_int(num_groups, "num_groups")
    if x.shape[1] % num_groups:
        raise ValueError(
            "Expected number of channels in input to be divisible by num_groups, but got "
            f"input of shape {list(x.shape)} and num_groups={num_groups}"
        )
    check_channel_vector(weight, x.shape[1], "weight")
    check_channel_vector(bias, x.shape[1], "bias")
    return alternatives.group_norm_forward(x, num_groups, weight, bias, eps)


def batch_renorm_forward(x: Array, gamma: Array | None, beta: Array | None, running_mean: Array,
                         running_std: Array, r_max: float = 3.0, d_max: float = 5.0,
                         eps: float = 1e-5) -> tuple[Array, Any, Any]:
    """Batch renormalization training step (Ioffe 2017); see
    :func:`bncourse.core.alternatives.batch_renorm_forward`.  Returns (y, cache, stats)."""
    _check_batch_norm_inputs(x, eps, True, "batch_renorm", gamma=gamma, beta=beta,
                             running_mean=running_mean, running_std=running_std)
    check_batch_size(x.shape, closed_form.batch_axes(x.ndim))
    if not r_max >= 1:
        raise ValueError(f"r_max must be >= 1, got {r_max!r}")
    if not d_max >= 0:
        raise ValueError(f"d_max must be >= 0, got {d_max!r}")
    return alternatives.batch_renorm_forward(x, gamma, beta, running_mean, running_std,
                                             r_max, d_max, eps)


def alternative_backward(dy: Array, cache: Any) -> tuple[Array, Array | None, Array | None]:
    """Backward of any alternative's forward: (dx, dweight, dbias), None where absent."""
    check_grad(dy, cache.shape)
    return closed_form.norm_backward(dy, cache)


layer_norm_backward = instance_norm_backward = group_norm_backward = alternative_backward
batch_renorm_backward = alternative_backward


def rms_norm_backward(dy: Array, cache: Any) -> tuple[Array, Array | None]:
    """Backward of :func:`rms_norm_forward`: (dx, dweight)."""
    dx, dweight, _ = alternative_backward(dy, cache)
    return dx, dweight
