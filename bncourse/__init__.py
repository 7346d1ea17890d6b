"""bncourse: Batch Normalization, exactly.

Backends with the same API live in submodules: ``bncourse.numpy`` (CPU),
``bncourse.cupy`` (GPU) and ``bncourse.torch`` (autograd + ``torch.nn`` drop-ins).
Underneath: ``bncourse.core`` (the policy every backend shares: constants, running
statistics, validation, closed forms), ``bncourse.kernels`` (fast paths and their
selector), ``bncourse.functional`` and ``bncourse.layers`` (the array backends' functions
and layers); beside them ``bncourse.course`` (teaching modules), ``bncourse.paper`` (the
Figure 1 experiment) and ``bncourse.bench``.  Importing ``bncourse`` needs NumPy alone.
"""

__version__ = "0.1.0"
