"""Teaching modules of the book: ``reference`` (the staged graph), ``stats`` (mean and
variance four ways), ``gradcheck``, ``conventions``, ``accuracy``, ``recalibration``,
``tolerance`` (the one tolerance helper of tests and notebooks) and ``show_source``."""
