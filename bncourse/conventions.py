"""Old path of :mod:`bncourse.course.conventions`: the same module object, for existing imports."""

import sys

from .course import conventions as _moved

sys.modules[__name__] = _moved
