"""The alternatives to batch norm, as closed forms on the generic (array-API) path.

Each is :func:`bncourse.core.closed_form.standardize` over different axes plus an affine map:

===============  ==================================  ===========================
norm             one statistic per                   affine parameters
===============  ==================================  ===========================
layer norm       sample, over normalized_shape        elementwise over normalized_shape
instance norm    (sample, channel), over space        per channel
group norm       (sample, group), over (C/G, space)   per channel
RMS norm         sample, over normalized_shape        elementwise (scale only)
                 (mean square, no centering)
batch renorm     channel, over (N, space), then       per channel
                 corrected towards running stats
===============  ==================================  ===========================

All compute in float64 and return the input's dtype; inputs are validated by the public
wrappers in ``bncourse.functional``.  The backward pass of every one of them is
:func:`bncourse.core.closed_form.norm_backward`.
"""

from dataclasses import dataclass

from .closed_form import batch_axes, channel_shape, channel_view, norm_forward, to_float64
from .xp import array_namespace

# ----------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize each sample over its last ``len(normalized_shape)`` dims (biased variance).

    x: (*, *normalized_shape); weight, bias: normalized_shape or None.
    """
    k = len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    return norm_forward(x, axes, eps, weight, bias, tuple(normalized_shape),
                        tuple(range(x.ndim - k)))



# ----------------------------------------------------------------------------- RMS norm


def rms_norm_forward(x, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x²) + eps) over the last dims, times weight.  ``eps=None`` uses the
    machine epsilon of x's dtype, as ``torch.nn.functional.rms_norm`` does."""
    xp = array_namespace(x, weight)
    if eps is None:
        eps = float(xp.finfo(x.dtype).eps)
    k = len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    return norm_forward(x, axes, eps, weight, None, tuple(normalized_shape),
                        tuple(range(x.ndim - k)), center=False)


# ----------------------------------------------------------------------------- instance norm


def instance_norm_forward(x, weight=None, bias=None, eps=1e-5):
    """Normalize each (sample, channel) over its spatial axes.  x: (N, C, *spatial);
    weight, bias: (C,) or None.  Uses the input's statistics (no running statistics)."""
    axes = tuple(range(2, x.ndim))
    return norm_forward(x, axes, eps, weight, bias, channel_shape(x.ndim),
                        batch_axes(x.ndim))



# ----------------------------------------------------------------------------- group norm


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each (sample, group of C/G channels) over the group's channels and space.

    x: (N, C, *spatial) with C divisible by num_groups; weight, bias: (C,) or None.
    """
    N = x.shape[0]
    return norm_forward(x, (2,), eps, weight, bias, channel_shape(x.ndim),
                        batch_axes(x.ndim), work_shape=(N, num_groups, -1))



# ----------------------------------------------------------------------------- batch renorm


@dataclass
class BatchRenormStats:
    """Batch statistics and the correction of one batch-renorm step, float64, (C,)."""

    mean: object       # μ_B
    std: object        # σ_B = sqrt(biased var + eps)
    r: object          # clip(σ_B / σ, 1/r_max, r_max)
    d: object          # clip((μ_B − μ) / σ, −d_max, d_max)


def batch_renorm_forward(x, gamma, beta, running_mean, running_std, r_max, d_max, eps=1e-5):
    """Batch renormalization (Ioffe 2017, Algorithm 1), training step.

        x̂ = (x − μ_B)/σ_B · r + d,   y = γ·x̂ + β,
        r = clip(σ_B/σ, 1/r_max, r_max),  d = clip((μ_B − μ)/σ, −d_max, d_max),

    with σ_B = sqrt(σ_B² + ε) (biased σ_B²), μ, σ the running mean and running *std*; r and d
    are treated as constants in the backward pass (stop-gradient).  With r_max = 1 and
    d_max = 0 it is batch norm.  Returns (y, cache, stats) — stats feed the running update
    μ ← μ + α(μ_B − μ), σ ← σ + α(σ_B − σ) done by the layer.
    """
    xp = array_namespace(x, gamma, beta, running_mean, running_std)
    axes = batch_axes(x.ndim)
    stats = []

    def correct(st):
        mean_b = xp.reshape(st.mean, (-1,))
        std_b = xp.reshape(1.0 / st.invstd, (-1,))
        mu, sigma = to_float64(running_mean, xp), to_float64(running_std, xp)
        r = xp.clip(std_b / sigma, 1.0 / r_max, r_max)
        d = xp.clip((mean_b - mu) / sigma, -d_max, d_max)
        stats.append(BatchRenormStats(mean_b, std_b, r, d))
        return channel_view(r, x.ndim, xp), channel_view(d, x.ndim, xp)

    view = channel_shape(x.ndim)
    y, cache = norm_forward(x, axes, eps, gamma, beta, view, axes, correct=correct)
    return y, cache, stats[0]

