"""Old path of :mod:`bncourse.course.reference`: the same module object, for existing imports."""

import sys

from .course import reference as _moved

sys.modules[__name__] = _moved
