"""The fully connected sigmoid network of Ioffe & Szegedy (2015, §4.1), with hand-written
backward passes, on NumPy arrays.

    x (N, 784) → [Linear → norm → sigmoid] × 3 → Linear → logits (N, 10) → softmax cross-entropy

``norm`` is ``None`` (the baseline: each hidden layer computes g(W u + b)), ``"batch"``
(g(BN(W u)): the bias is dropped, BN's β replaces it, as in §3.2 of the paper), or
``"group"`` (g(GN(W u)), group norm over groups of units of one example).  Normalization
layers are :mod:`bncourse.numpy`'s ``BatchNorm`` and ``GroupNorm``; every layer has the
same small interface: ``forward(x)``, ``backward(dy) -> dx``, ``parameters()`` and
``grads`` (name → array), ``train()``/``eval()``.
"""

import numpy as np

import bncourse.numpy as bn

NORMS = (None, "batch", "group")


class Linear:
    """y = x @ W + b.  x: (N, n_in), W: (n_in, n_out) ~ N(0, init_std²), b: (n_out,) zeros or
    None.  Backward: dW = xᵀ dy, db = Σ_rows dy, dx = dy Wᵀ."""

    def __init__(self, n_in, n_out, rng, init_std, bias=True, dtype="float64"):
        self.W = (init_std * rng.standard_normal((n_in, n_out))).astype(dtype)
        self.b = np.zeros(n_out, dtype=dtype) if bias else None
        self.grads = {}
        self.need_dx = True       # False for the first layer: nobody needs dL/d(input)

    def parameters(self):
        return {"W": self.W} if self.b is None else {"W": self.W, "b": self.b}

    def forward(self, x):
        self._x = x
        y = x @ self.W
        return y if self.b is None else y + self.b

    def backward(self, dy):
        self.grads = {"W": self._x.T @ dy}
        if self.b is not None:
            self.grads["b"] = dy.sum(axis=0)
        return dy @ self.W.T if self.need_dx else None

    def train(self, mode=True):
        return self

    def eval(self):
        return self


class Sigmoid:
    """s = 1 / (1 + exp(−u)), elementwise; ds/du = s (1 − s)."""

    grads: dict = {}

    def parameters(self):
        return {}

    def forward(self, u):
        # exp(−|u|) never overflows: s = 1/(1 + e^{−u}) for u ≥ 0, e^{u}/(1 + e^{u}) below
        e = np.exp(-np.abs(u))
        self._s = np.where(u >= 0, 1, e) / (1 + e)
        return self._s

    def backward(self, ds):
        return ds * self._s * (1 - self._s)

    def train(self, mode=True):
        return self

    def eval(self):
        return self


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits: (N, K); labels: (N,) ints in [0, K).  Returns (loss, dlogits (N, K)) with
    dlogits = (softmax(logits) − onehot(labels)) / N.
    """
    z = logits - logits.max(axis=1, keepdims=True)      # shift: exp never overflows
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    dlogits = np.exp(log_p)
    dlogits[np.arange(n), labels] -= 1
    return float(loss), dlogits / n


def make_norm(norm, width, dtype, groups=10):
    """The normalization layer of a hidden layer: None, bn.BatchNorm or bn.GroupNorm."""
    if norm is None:
        return None
    if norm == "batch":
        return bn.BatchNorm(width, dtype=dtype)
    if norm == "group":
        return bn.GroupNorm(groups, width, dtype=dtype)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class MLP:
    """The paper's MNIST network.

    Args:
        sizes: widths (input, hidden..., classes); the paper's (784, 100, 100, 100, 10).
        norm: None, "batch" or "group" before every sigmoid.
        init_std: standard deviation of the Gaussian initial weights of the hidden layers
            (biases start at 0).
        output_std: the same for the output layer (default: ``init_std``).
        rng: a ``numpy.random.Generator`` (the only source of randomness).
        dtype: float32 or float64 for every parameter and activation.
        groups: number of groups of hidden units for ``norm="group"``.
    After ``forward``, ``sigmoid_inputs[k]`` is the (N, width) input of the k-th sigmoid.
    """

    def __init__(self, sizes=(784, 100, 100, 100, 10), norm=None, init_std=0.1, rng=None,
                 dtype="float64", groups=10, output_std=None):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.norm, self.dtype = norm, np.dtype(dtype)
        self.layers = []
        for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
            self.layers.append(Linear(n_in, n_out, rng, init_std, bias=norm is None, dtype=dtype))
            norm_layer = make_norm(norm, n_out, dtype, groups)
            if norm_layer is not None:
                self.layers.append(norm_layer)
            self.layers.append(Sigmoid())
        output_std = init_std if output_std is None else output_std
        self.layers.append(Linear(sizes[-2], sizes[-1], rng, output_std, dtype=dtype))
        self.layers[0].need_dx = False
        self.sigmoid_inputs = []

    def train(self, mode=True):
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        """(N, 784) → logits (N, 10); records the input of every sigmoid."""
        self.sigmoid_inputs = []
        h = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            if isinstance(layer, Sigmoid):
                self.sigmoid_inputs.append(h)
            h = layer.forward(h)
        return h

    def backward(self, dlogits):
        """Backpropagate dL/dlogits (N, 10); fills every layer's ``grads``."""
        d = dlogits.astype(self.dtype, copy=False)
        for layer in reversed(self.layers):
            d = layer.backward(d)

    def parameters(self):
        """[(layer index, name, array)] of every trainable parameter."""
        return [(i, name, p) for i, layer in enumerate(self.layers)
                for name, p in layer.parameters().items()]

    def gradients(self):
        """[(layer index, name, gradient)] in the order of :meth:`parameters`."""
        return [(i, name, self.layers[i].grads[name]) for i, name, _ in self.parameters()]

    def sgd_step(self, lr):
        """Plain SGD, in place: p ← p − lr · dL/dp for every parameter."""
        for i, name, p in self.parameters():
            p -= np.asarray(lr * self.layers[i].grads[name], dtype=p.dtype)

    def loss_and_backward(self, x, labels):
        """One forward and backward pass on a batch (training mode); returns the loss."""
        loss, dlogits = softmax_cross_entropy(self.forward(x), labels)
        self.backward(dlogits)
        return loss

    def predict(self, x, batch=2000):
        """Class predictions (N,) in the current mode (call ``eval()`` first for BN's
        running statistics)."""
        return np.concatenate([self.forward(x[i:i + batch]).argmax(axis=1)
                               for i in range(0, len(x), batch)])
