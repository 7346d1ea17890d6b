"""Old path of :mod:`bncourse.course.accuracy`: the same module object, for existing imports."""

import sys

from .course import accuracy as _moved

if __name__ == "__main__":     # python -m bncourse.accuracy
    _moved.main()
else:
    sys.modules[__name__] = _moved
