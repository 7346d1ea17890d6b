"""Old path of :mod:`bncourse.core.xp`: the same module object, for existing imports."""

import sys

from .core import xp as _moved

sys.modules[__name__] = _moved
