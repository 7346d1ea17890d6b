"""Public path of :mod:`bncourse.course.labs` (the checkers of the book's labs): the same
module object, ``from bncourse import labs``."""

import sys

from .course import labs as _moved

sys.modules[__name__] = _moved
