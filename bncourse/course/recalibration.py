"""Recalibrate batch-norm running statistics after training (``torch.optim.swa_utils.update_bn``).

During training the running statistics are exponential moving averages over batches seen
while the weights were still changing.  Once the weights are final, one pass over the data
in training mode with ``momentum=None`` (a cumulative average) replaces them by

    running_mean = (1/K) Σ_k μ_k,     running_var = (1/K) Σ_k σ_k² · m_k/(m_k − 1),

the plain average over the K batches of each batch's mean and unbiased variance: Algorithm 2
of Ioffe & Szegedy (2015), computed with the final weights.
"""

from ..layers import BatchNorm


def recalibrate(model, batches):
    """Recompute the running statistics of every batch-norm layer of ``model`` from ``batches``.

    Args:
        model: a layer, or a sequence of callables applied in order (layers of
            ``bncourse.numpy`` / ``bncourse.cupy`` or plain functions such as
            ``lambda x: x @ W.T``).  Its ``BatchNorm`` layers with ``track_running_stats``
            are recalibrated; other layers are only run.
        batches: an iterable of inputs, or of tuples/lists whose first item is the input
            (``(x, target)`` pairs), as ``update_bn`` accepts.

    For the pass, each batch-norm layer's statistics are reset (mean 0, variance 1,
    ``num_batches_tracked`` 0), its ``momentum`` set to None and every layer put in
    training mode; afterwards each layer gets back its own mode and momentum, so
    ``num_batches_tracked`` ends equal to the number of batches.  Parameters are untouched.
    Returns ``model``.  Raises ValueError when ``batches`` is empty (before any change).
    """
    layers = list(model) if isinstance(model, (list, tuple)) else [model]
    norms = [lay for lay in layers if isinstance(lay, BatchNorm) and lay.track_running_stats]
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise ValueError("recalibrate needs at least one batch, got none")
    if not norms:
        return model
    modes = [(lay, lay.training) for lay in layers if hasattr(lay, "train")]
    momenta = [(lay, lay.momentum) for lay in norms]
    try:
        for lay in norms:
            lay.reset_running_stats()
            lay.momentum = None            # f = 1/num_batches_tracked: a cumulative average
        for lay, _ in modes:
            lay.train()
        for batch in _chain(first, it):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            for lay in layers:
                x = lay(x)
    finally:
        for lay, momentum in momenta:
            lay.momentum = momentum
        for lay, training in modes:
            lay.train(training)
    return model


def _chain(first, rest):
    yield first
    yield from rest
