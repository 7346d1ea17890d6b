"""``torch.nn`` modules for the alternatives, computed by :mod:`bncourse.torch.alternatives`.

Where PyTorch has the module (``LayerNorm``, ``RMSNorm``, ``GroupNorm``,
``InstanceNorm1d/2d/3d``) ours subclasses it and replaces only the call into
``torch.nn.functional``: constructor, parameters, buffers, ``state_dict`` and ``repr`` are
PyTorch's (and so are the instance norms' checks and unbatched inputs).  Batch
renormalization has no PyTorch counterpart: :class:`BatchRenorm` follows ``BatchNorm*d``'s
conventions with a running *std*.
"""

import torch

from .alternatives import batch_renorm, group_norm, instance_norm, layer_norm, rms_norm


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` computed by :func:`bncourse.torch.layer_norm`."""

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` (``eps=None``: the input dtype's machine epsilon) computed by
    :func:`bncourse.torch.rms_norm`."""

    def forward(self, input):
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)


class GroupNorm(torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by :func:`bncourse.torch.group_norm`."""

    def forward(self, input):
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class _InstanceNorm(torch.nn.modules.instancenorm._InstanceNorm):
    """PyTorch's instance-norm modules with :func:`bncourse.torch.instance_norm`.  With
    ``track_running_stats`` the running statistics are the batch averages of the
    per-instance mean and unbiased variance; ``momentum=None`` means no update (PyTorch)."""

    def _apply_instance_norm(self, input):
        return instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training or not self.track_running_stats,
                             0.0 if self.momentum is None else self.momentum, self.eps)


class InstanceNorm1d(_InstanceNorm, torch.nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d``: (N, C, L) or unbatched (C, L)."""


class InstanceNorm2d(_InstanceNorm, torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d``: (N, C, H, W) or unbatched (C, H, W)."""


class InstanceNorm3d(_InstanceNorm, torch.nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d``: (N, C, D, H, W) or unbatched (C, D, H, W)."""


class BatchRenorm(torch.nn.Module):
    """Batch renormalization (Ioffe 2017) over dim 1 of (N, C, *spatial) inputs, 2-D to 5-D.

    Training: x̂ = (x − μ_B)/σ_B·r + d with r = clip(σ_B/σ, 1/r_max, r_max) and
    d = clip((μ_B − μ)/σ, −d_max, d_max) held constant in the backward pass, σ_B =
    sqrt(biased batch variance + eps); then μ ← μ + momentum·(μ_B − μ) and
    σ ← σ + momentum·(σ_B − σ).  Eval: y = weight·(x − μ)/σ + bias.  ``running_std`` σ is a
    standard deviation that already contains eps.  ``r_max``/``d_max`` are attributes: the
    paper starts at 1 and 0 (plain batch norm) and relaxes them during training.

    Parameters ``weight`` (ones), ``bias`` (zeros) when ``affine``; buffers ``running_mean``
    (zeros), ``running_std`` (ones), ``num_batches_tracked``.  ``torch.func.vmap`` is not
    supported in training (it raises ``NotImplementedError``); ``grad`` and ``jvp`` are.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.01, r_max=3.0, d_max=5.0,
                 affine=True, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.r_max, self.d_max, self.affine = r_max, d_max, affine
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features, **kw))
            self.bias = torch.nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_std", torch.ones(num_features, **kw))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def forward(self, input):
        y = batch_renorm(input, self.running_mean, self.running_std, self.weight, self.bias,
                         self.training, self.momentum, self.eps, self.r_max, self.d_max)
        if self.training:
            self.num_batches_tracked.add_(1)
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"r_max={self.r_max}, d_max={self.d_max}, affine={self.affine}")
