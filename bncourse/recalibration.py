"""Old path of :mod:`bncourse.course.recalibration`: the same module object, for existing imports."""

import sys

from .course import recalibration as _moved

sys.modules[__name__] = _moved
