"""Old path of :mod:`bncourse.kernels.threads`: the same module object, for existing imports."""

import sys

from .kernels import threads as _moved

sys.modules[__name__] = _moved
