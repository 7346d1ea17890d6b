"""Old path of :mod:`bncourse.paper.plots`: the same module object, for existing imports."""

import sys

from .paper import plots as _moved

sys.modules[__name__] = _moved
