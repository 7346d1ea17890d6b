"""Old path of :mod:`bncourse.core.closed_form`: the same module object, for existing imports."""

import sys

from .core import closed_form as _moved

sys.modules[__name__] = _moved
