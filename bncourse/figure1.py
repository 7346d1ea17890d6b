"""Old path of :mod:`bncourse.paper.figure1`: the same module object, for existing imports."""

import sys

from .paper import figure1 as _moved

if __name__ == "__main__":     # python -m bncourse.figure1
    _moved.main()
else:
    sys.modules[__name__] = _moved
