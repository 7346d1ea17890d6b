"""Old path of :mod:`bncourse.paper.datasets`: the same module object, for existing imports."""

import sys

from .paper import datasets as _moved

sys.modules[__name__] = _moved
