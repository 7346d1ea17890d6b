"""Old path of :mod:`bncourse.course.stats`: the same module object, for existing imports."""

import sys

from .course import stats as _moved

sys.modules[__name__] = _moved
