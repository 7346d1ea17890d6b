"""Old home of the torch backend's argument checks: now :mod:`bncourse.core.validation`
(one contract for every backend); this name is the same module object."""

import sys

from ..core import validation as _moved

sys.modules[__name__] = _moved
