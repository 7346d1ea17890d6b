"""Old path of :mod:`bncourse.paper.mlp`: the same module object, for existing imports."""

import sys

from .paper import mlp as _moved

sys.modules[__name__] = _moved
