"""bncourse.torch — batch norm for PyTorch with a hand-written backward (needs torch)."""

from .alternative_modules import (BatchRenorm, GroupNorm, InstanceNorm1d, InstanceNorm2d,
                                  InstanceNorm3d, LayerNorm, RMSNorm)
from .alternatives import (BatchRenormFunction, GroupNormFunction, InstanceNormFunction,
                           LayerNormFunction, RMSNormFunction, batch_renorm, group_norm,
                           instance_norm, layer_norm, rms_norm)
from .functional import BatchNormFunction, batch_norm
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm
from .folding import find_foldable_pairs, fold_batchnorms, fold_bn_into
from .distributed import SyncBatchNorm, SyncBatchNormFunction, convert_sync_batchnorm, sync_batch_norm
