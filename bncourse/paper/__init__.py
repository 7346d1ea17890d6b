"""The Figure 1 experiment of Ioffe & Szegedy (2015): ``mlp``, ``figure1``, ``datasets``
(with the MNIST subset in ``data/``) and ``plots``."""
