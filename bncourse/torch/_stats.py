"""Old path of :mod:`bncourse.core.torch_stats`: the same module object, for existing imports."""

import sys

from ..core import torch_stats as _moved

sys.modules[__name__] = _moved
