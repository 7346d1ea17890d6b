"""bncourse.torch — batch norm for PyTorch with a hand-written backward (needs torch)."""

from .functional import BatchNormFunction, batch_norm
