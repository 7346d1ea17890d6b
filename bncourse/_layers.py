"""Old path of :mod:`bncourse.layers`: the same module object, for existing imports."""

import sys

from . import layers as _moved

sys.modules[__name__] = _moved
