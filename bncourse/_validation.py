"""Old path of :mod:`bncourse.core.validation`: the same module object, for existing imports."""

import sys

from .core import validation as _moved

sys.modules[__name__] = _moved
