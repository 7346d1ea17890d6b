"""Old path of :mod:`bncourse.bench.gpu`: the same module object, for existing imports."""

import sys

from .bench import gpu as _moved

sys.modules[__name__] = _moved
