"""Old path of :mod:`bncourse.core.alternatives`: the same module object, for existing imports."""

import sys

from .core import alternatives as _moved

sys.modules[__name__] = _moved
