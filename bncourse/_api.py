"""Old path of :mod:`bncourse.functional`: the same module object, for existing imports."""

import sys

from . import functional as _moved

sys.modules[__name__] = _moved
