"""Batch-norm conventions of PyTorch, Keras, Flax and Chainer, and a translator between them.

The four frameworks compute the same training-mode transform, y = γ·(x − μ_B)/sqrt(σ_B² + ε)
+ β with the *biased* batch variance σ_B², but they disagree on almost everything around it:

==========  ===========================  ================  =======  ===========  ============
framework   running update               default           eps      running var  channel axis
==========  ===========================  ================  =======  ===========  ============
pytorch     (1 − f)·old + f·new          momentum f = 0.1  1e-5     unbiased     1
keras       d·old + (1 − d)·new          momentum d = 0.99 1e-3     biased       -1
flax        d·old + (1 − d)·new          momentum d = 0.99 1e-5     biased       -1
chainer     d·old + (1 − d)·new          decay d = 0.9     2e-5     unbiased     1
==========  ===========================  ================  =======  ===========  ============

and on the names of the state (``running_mean`` / ``moving_mean`` / ``batch_stats.mean`` /
``avg_mean``, ...).  "unbiased" means the batch variance enters the running average times
m/(m − 1), m being the number of values per channel in the batch (N for (N, C) inputs,
N·H·W for images).  Each row was read from the framework's own source; see ``source``.

``momentum=None`` is PyTorch's *cumulative* average (f = 1/n at the n-th batch), not an
exponential one: no constant of another framework reproduces it, so translating it raises
(:data:`CUMULATIVE`).  Its ports: Chainer's fine-tuning mode (``bn(x, finetune=True)``
counts its batches in ``N`` and uses decay 1 − 1/N: the same average), or a per-step
schedule momentum_n = 1/n (decay 1 − 1/n).  To mean "the default", omit ``momentum``.

:data:`CONVENTIONS` holds the table; :func:`momentum_equivalent` and
:func:`convert_hyperparameters` translate the constructor arguments;
:func:`convert_bn_state` translates a layer's state (names, and, given the batch size, the
variance estimator); :func:`running_update` is one training step's update of the running
statistics under any of the four conventions (NumPy, float64), for experiments.
"""

from dataclasses import dataclass
import warnings

import numpy as np

from ..core.running import unbiased
from ..core.validation import check_momentum
from . import stats

DEFAULT = "default"     # the framework's default averaging constant (a momentum argument left out)

CUMULATIVE = (
    "PyTorch's momentum=None is a cumulative average (the n-th batch has weight 1/n, "
    "num_batches_tracked counts them), not an exponential moving average: no constant "
    "momentum or decay reproduces it.  Port it as Chainer's fine-tuning mode "
    "(chainer.links.BatchNormalization called with finetune=True: decay 1 - 1/N over its N "
    "batches, the same average) or as a per-step schedule, momentum_n = 1/n in PyTorch's "
    "convention (decay_n = 1 - 1/n in Keras, Flax and Chainer); omit momentum for "
    "PyTorch's default 0.1")


@dataclass(frozen=True)
class Convention:
    """How one framework's batch-norm layer names and updates its state.

    ``names`` maps a role (weight γ, bias β, running mean, running variance, batch counter)
    to the key path of that value in the framework's state (a tuple: Flax nests its
    variables in collections); a role the framework does not store is absent.
    ``momentum_weights`` says which value the averaging constant multiplies: ``"new"``
    (PyTorch's ``momentum`` f: old·(1 − f) + new·f) or ``"old"`` (a decay d:
    old·d + new·(1 − d)).  ``running_var`` is ``"unbiased"`` if the batch variance is
    multiplied by m/(m − 1) before it is averaged, ``"biased"`` if it is averaged as is.
    Running mean and variance start at 0 and 1 in all four frameworks.
    """

    framework: str
    layer: str                  # the layer class
    names: dict                 # role -> key path (tuple of str)
    momentum_name: str          # constructor argument of the averaging constant
    momentum: float             # its default
    momentum_weights: str       # "new" or "old"
    eps_name: str               # constructor argument of epsilon
    eps: float                  # its default
    running_var: str            # "unbiased" or "biased"
    channel_axis: int           # default axis of the features (1: NCHW, -1: NHWC)
    source: str                 # where these facts were read

    def retain(self, momentum=DEFAULT):
        """The weight of the *old* value in one update, for ``momentum`` in this
        framework's own convention (omitted, or None outside PyTorch: the framework's
        default; PyTorch's None, the cumulative average, raises :data:`CUMULATIVE`)."""
        if momentum is DEFAULT or (momentum is None and self.framework != "pytorch"):
            value = self.momentum
        else:
            value = _check_momentum(momentum)
        return 1.0 - value if self.momentum_weights == "new" else value

    def key(self, role):
        """The flat name of a role, e.g. 'running_var' or 'batch_stats/var'."""
        return "/".join(self.names[role])


CONVENTIONS = {
    "pytorch": Convention(
        "pytorch", "torch.nn.BatchNorm1d/2d/3d",
        {"weight": ("weight",), "bias": ("bias",), "mean": ("running_mean",),
         "var": ("running_var",), "count": ("num_batches_tracked",)},
        "momentum", 0.1, "new", "eps", 1e-5, "unbiased", 1,
        "torch/nn/modules/batchnorm.py (class _NormBase, _BatchNorm)"),
    "keras": Convention(
        "keras", "keras.layers.BatchNormalization",
        {"weight": ("gamma",), "bias": ("beta",), "mean": ("moving_mean",),
         "var": ("moving_variance",)},
        "momentum", 0.99, "old", "epsilon", 1e-3, "biased", -1,
        "keras/src/layers/normalization/batch_normalization.py; "
        "ops.moments in keras/src/backend/*/nn.py"),
    "flax": Convention(
        "flax", "flax.linen.BatchNorm",
        {"weight": ("params", "scale"), "bias": ("params", "bias"),
         "mean": ("batch_stats", "mean"), "var": ("batch_stats", "var")},
        "momentum", 0.99, "old", "epsilon", 1e-5, "biased", -1,
        "flax/linen/normalization.py (BatchNorm, _compute_stats)"),
    "chainer": Convention(
        "chainer", "chainer.links.BatchNormalization",
        {"weight": ("gamma",), "bias": ("beta",), "mean": ("avg_mean",),
         "var": ("avg_var",), "count": ("N",)},
        "decay", 0.9, "old", "eps", 2e-5, "unbiased", 1,
        "chainer/links/normalization/batch_normalization.py; "
        "chainer/functions/normalization/batch_normalization.py"),
}
INITIAL_MEAN, INITIAL_VAR = 0.0, 1.0


def convention(framework):
    """The :class:`Convention` of ``framework`` ('pytorch', 'keras', 'flax', 'chainer')."""
    try:
        return CONVENTIONS[framework]
    except KeyError:
        raise ValueError(f"unknown framework {framework!r}; expected one of "
                         f"{', '.join(CONVENTIONS)}") from None


def _check_momentum(m):
    if m is None:                        # reached only for PyTorch (retain): its cumulative average
        raise ValueError(CUMULATIVE)
    check_momentum(m, allow_none=False)
    return float(m)


def momentum_equivalent(momentum=DEFAULT, src="keras", dst="pytorch", batch_ratio=1.0):
    """``src``'s averaging constant ``momentum`` expressed in ``dst``'s convention.

    Keras' momentum 0.99 is PyTorch's 0.01; Chainer's decay 0.9 is PyTorch's 0.1.
    ``momentum`` omitted (or None for a source other than PyTorch) means ``src``'s default;
    PyTorch's ``momentum=None`` (a cumulative average) raises ``ValueError`` (module
    docstring).  ``batch_ratio`` = (dst's batch size) /
    (src's batch size): with k times larger batches there are k times fewer updates per
    epoch, and the average forgets at the same rate *per example* when the weight of the
    old value becomes retain**k.  Returns a float.
    """
    s, d = convention(src), convention(dst)
    if not batch_ratio > 0:
        raise ValueError(f"batch_ratio must be > 0, got {batch_ratio!r}")
    retain = s.retain(momentum) ** batch_ratio
    return 1.0 - retain if d.momentum_weights == "new" else retain


def convert_hyperparameters(src="keras", dst="pytorch", momentum=DEFAULT, eps=None):
    """The constructor arguments that give a ``dst`` layer ``src``'s behaviour:
    ``{dst momentum name: value, dst eps name: value}``, from ``src``'s ``momentum`` and
    ``eps`` (default: ``src``'s defaults).  E.g. Keras' defaults are PyTorch's
    ``{'momentum': 0.01, 'eps': 0.001}``.  PyTorch's ``momentum=None`` raises ``ValueError``:
    a cumulative average has no constant equivalent (the message says how to port it)."""
    s, d = convention(src), convention(dst)
    eps = s.eps if eps is None else eps
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    return {d.momentum_name: momentum_equivalent(momentum, src, dst), d.eps_name: float(eps)}


def _get(state, path):
    for k in path:
        if not isinstance(state, dict) or k not in state:
            return None
        state = state[k]
    return state


def _put(state, path, value):
    for k in path[:-1]:
        state = state.setdefault(k, {})
    state[path[-1]] = value


def _leaves(state, prefix=()):
    for k, v in state.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def _float_array(v):
    a = np.asarray(v)
    if a.dtype.kind != "f":
        raise TypeError(f"expected a floating-point array, got dtype {a.dtype}")
    return a


def convert_bn_state(state, src="keras", dst="pytorch", batch_size=None, steps=None,
                     momentum=DEFAULT):
    """One batch-norm layer's state in ``src``'s names and conventions -> ``dst``'s.

    Args:
        state: the layer's state in ``src``'s layout: a dict of arrays (PyTorch
            ``state_dict()`` of the layer, Keras weights by name, Chainer's link
            attributes), nested for Flax (``{"params": {...}, "batch_stats": {...}}``).
            Running mean and variance are required; weight, bias and counter optional.
        batch_size: m, the number of values per channel in each training batch (N for
            (N, C) inputs, N·H·W for images).  None: the statistics are copied as they
            are.  Given, and the two frameworks use different variance estimators, the
            running variance is re-expressed in ``dst``'s (see below).
        steps: how many updates the running statistics have had (used with
            ``batch_size``); None: assume the initial variance 1 is forgotten.
        momentum: ``src``'s averaging constant, in ``src``'s convention (default: its
            default); it says how much of the initial value is left after ``steps``.
            PyTorch's None (cumulative average) is exact here: its first update has
            weight 1, so nothing of the initial value is left after a step.

    Which conversion you want depends on what comes next:

    * **to reproduce ``src``'s inference outputs in ``dst``**, copy the statistics as they
      are (``batch_size=None``): eval mode uses the stored variance directly in every
      framework.  Carry ε too (:func:`convert_hyperparameters`): the defaults differ.
    * **to get the statistics ``dst`` itself would have tracked** on the same batches with
      the equivalent momentum (to resume training in ``dst``, or to compare two runs),
      re-express the variance: each batch variance entered the average as σ_B² (biased)
      or σ_B²·r with r = m/(m − 1) (unbiased).  After t updates with weight d of the old
      value, starting from 1, the average is  v = d^t + Σ_k (1 − d)·d^(t−k)·σ_k²  (times
      r inside the sum if unbiased), so
          unbiased = r·(biased − d^t) + d^t,     biased = (unbiased − d^t)/r + d^t.
      This is exact when every batch had m values per channel and ``steps`` = t is known;
      with ``steps=None`` the d^t terms are dropped, an error of at most |r − 1|·d^t.
      The variance of a single batch cannot be recovered from the average: without m no
      exact conversion exists.

    The counter (PyTorch's ``num_batches_tracked``, Chainer's ``N``, which counts its
    fine-tuning batches: the same cumulative average as PyTorch's ``momentum=None``) is
    carried over when both have one; a ``dst`` counter missing from ``src`` is set to
    ``steps`` (or 0).  Returns a new dict in ``dst``'s layout; floating arrays are NumPy
    arrays of the input's dtype, the counter an int64 0-d array.
    """
    s, d = convention(src), convention(dst)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    known = {s.names[r] for r in s.names}
    extra = [p for p in _leaves(state) if p not in known]
    if extra:
        raise ValueError(f"keys not in a {src} batch-norm state: "
                         f"{', '.join('/'.join(p) for p in extra)}")
    values = {role: _get(state, s.names[role]) for role in s.names}
    for role in ("mean", "var"):
        if values[role] is None:
            raise ValueError(f"the {src} state has no {s.key(role)!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")

    out = {}
    for role in ("weight", "bias", "mean"):
        if values.get(role) is not None and role in d.names:
            _put(out, d.names[role], _float_array(values[role]).copy())
    var = _float_array(values["var"])
    if batch_size is not None and s.running_var != d.running_var:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size (values per channel) must be an integer >= 2, "
                             f"got {batch_size!r}")
        r = batch_size / (batch_size - 1)
        if src == "pytorch" and momentum is None:     # cumulative: the first batch has weight 1
            left = 0.0 if steps is None or steps > 0 else 1.0
        else:
            left = 0.0 if steps is None else s.retain(momentum) ** steps   # weight of the initial 1
        v = var.astype(np.float64)
        v = r * (v - left) + left if d.running_var == "unbiased" else (v - left) / r + left
        var = v.astype(var.dtype)
    _put(out, d.names["var"], var.copy())
    if "count" in d.names:
        count = values.get("count")
        count = int(np.asarray(count)) if count is not None else (steps or 0)
        _put(out, d.names["count"], np.asarray(count, dtype=np.int64))
    return out


def batch_moments(x, channel_axis=1):
    """Per-channel (mean, biased variance, m) of ``x`` over every axis but ``channel_axis``:
    :func:`bncourse.course.stats.moments` (two passes) in float64."""
    x = np.asarray(x, dtype=np.float64)
    axis = channel_axis % x.ndim
    mo = stats.moments(x, tuple(a for a in range(x.ndim) if a != axis))
    return mo.mean, mo.var(), mo.n


def running_update(mean, var, x, framework="pytorch", momentum=DEFAULT, channel_axis=None):
    """One training step's update of the running statistics, in ``framework``'s convention.

    ``x`` is the batch with its channels on ``channel_axis`` (default: the framework's);
    ``momentum`` is in the framework's own convention (omitted: its default; PyTorch's None
    raises, see :data:`CUMULATIVE`).  With d the weight of the old value and m the values
    per channel:
        mean ← d·mean + (1 − d)·μ_B,   var ← d·var + (1 − d)·σ_B²·(m/(m − 1) or 1).
    m = 1: PyTorch refuses the batch (``ValueError``, as its layers do in training);
    Chainer warns and uses m/max(m − 1, 1) = 1, so var ← d·var + (1 − d)·0 = d·var
    (chainer/functions/normalization/batch_normalization.py); Keras and Flax average the
    biased variance 0.  Returns the new (mean, var) as float64 arrays; the inputs are not
    modified.
    """
    c = convention(framework)
    d = c.retain(momentum)
    mu, sigma2, m = batch_moments(x, c.channel_axis if channel_axis is None else channel_axis)
    if m < 1:
        raise ValueError(f"the batch has no values per channel (m = {m})")
    if c.running_var == "unbiased":
        if m == 1 and framework == "chainer":
            warnings.warn("A batch with one value per channel was given: Chainer's "
                          "F.batch_normalization outputs zeros for it and updates "
                          "avg_var <- decay * avg_var (adjust = m / max(m - 1, 1) = 1)",
                          UserWarning, stacklevel=2)
        elif m < 2:
            raise ValueError(f"an unbiased variance needs m >= 2 values per channel, got {m} "
                             "(PyTorch: Expected more than 1 value per channel when training)")
        sigma2 = unbiased(sigma2, m) if m > 1 else sigma2     # Chainer: adjust = 1 for m = 1
    new_mean = d * np.asarray(mean, dtype=np.float64) + (1 - d) * mu
    new_var = d * np.asarray(var, dtype=np.float64) + (1 - d) * sigma2
    return new_mean, new_var
