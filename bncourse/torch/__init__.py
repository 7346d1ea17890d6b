"""bncourse.torch — batch norm and its alternatives for PyTorch, with hand-written backward.

Needs torch (``pip install bncourse[torch]``); ``import bncourse`` does not import it.

Functional (``torch.nn.functional``'s signatures and semantics):
    ``batch_norm``, ``layer_norm``, ``rms_norm``, ``group_norm``, ``instance_norm``, plus
    ``batch_renorm`` (Ioffe 2017) and ``sync_batch_norm`` (over a process group).
autograd Functions (closed-form backward and forward-mode ``jvp``, double backward, the
``setup_context`` style with a ``vmap`` rule, so ``torch.func``'s ``vmap``, ``grad``, ``jacrev``,
``jacfwd``, ``jvp`` compose; ``apply`` returns (y, *statistics)):
    ``BatchNormFunction``, ``LayerNormFunction``, ``RMSNormFunction``, ``GroupNormFunction``,
    ``InstanceNormFunction``, ``BatchRenormFunction``, ``SyncBatchNormFunction`` (the last two
    refuse ``vmap``).
Modules (``torch.nn``'s constructors, parameters, buffers, state_dict keys and repr):
    ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``,
    ``InstanceNorm1d/2d/3d``, ``BatchRenorm``; ``convert_batchnorm(model)`` and
    ``convert_sync_batchnorm(model, process_group=None)`` swap them in, in place.
Inference: ``fold_bn_into(layer, bn)``, ``fold_batchnorms(model)``, ``find_foldable_pairs``.

Conventions: channels on dim 1, inputs 2-D or more (the modules check their own ranks, as
torch.nn's do); normalization by the *biased* variance, ``running_var`` tracks the
*unbiased* one; ``momentum`` is the weight of the *new* value (``None`` in a module:
cumulative average).  float16/bfloat16 inputs are computed in
float32 and returned in their dtype.  Statistics are shifted sums accumulated in float64
(:mod:`bncourse.core.torch_stats`): exact where PyTorch's float32 kernel is not (e.g. data
around 1e4 with unit spread), on CPU and CUDA alike.
"""

try:  # the one optional dependency of this subpackage: say which extra brings it
    import torch as _torch  # noqa: F401
except ImportError as exc:
    raise ImportError('bncourse.torch needs PyTorch: pip install "bncourse[torch]"') from exc

from .alternative_modules import (BatchRenorm, GroupNorm, InstanceNorm1d, InstanceNorm2d,
                                  InstanceNorm3d, LayerNorm, RMSNorm)
from .alternatives import (BatchRenormFunction, GroupNormFunction, InstanceNormFunction,
                           LayerNormFunction, RMSNormFunction, batch_renorm, group_norm,
                           instance_norm, layer_norm, rms_norm)
from .distributed import SyncBatchNorm, SyncBatchNormFunction, convert_sync_batchnorm, sync_batch_norm
from .folding import find_foldable_pairs, fold_batchnorms, fold_bn_into
from .functional import BatchNormFunction, batch_norm
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm
from .ghost import GhostBatchNorm1d, GhostBatchNorm2d
from .noisy import DistributionShift
from .blocks import (TLU, FilterResponseNorm2d, ResidualBlock, SkipInit, WSConv2d,
                     adaptive_grad_clip_, standardize_weight)

__all__ = [
    "batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm", "batch_renorm",
    "sync_batch_norm",
    "BatchNormFunction", "LayerNormFunction", "RMSNormFunction", "GroupNormFunction",
    "InstanceNormFunction", "BatchRenormFunction", "SyncBatchNormFunction",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "RMSNorm",
    "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchRenorm",
    "convert_batchnorm", "convert_sync_batchnorm",
    "fold_bn_into", "fold_batchnorms", "find_foldable_pairs",
    "GhostBatchNorm1d", "GhostBatchNorm2d", "DistributionShift",
    "ResidualBlock", "SkipInit", "standardize_weight", "WSConv2d", "FilterResponseNorm2d", "TLU",
    "adaptive_grad_clip_",
]
