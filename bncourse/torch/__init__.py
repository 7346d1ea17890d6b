"""bncourse.torch — batch norm for PyTorch with a hand-written backward (needs torch)."""

from .functional import BatchNormFunction, batch_norm
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm
