"""bncourse: Batch Normalization, exactly.

Backends with the same API live in submodules: ``bncourse.numpy`` (CPU),
``bncourse.cupy`` (GPU) and ``bncourse.torch`` (autograd + ``torch.nn`` drop-ins).
Importing ``bncourse`` needs NumPy alone.
"""

__version__ = "0.1.0"
