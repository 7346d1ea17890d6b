"""Old path of :mod:`bncourse.kernels.cuda`: the same module object, for existing imports."""

import sys

from .kernels import cuda as _moved

sys.modules[__name__] = _moved
