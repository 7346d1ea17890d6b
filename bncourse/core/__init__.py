"""Policy every backend shares, written once.

``policy`` (constants, compute dtype), ``running`` (the running-statistics rule),
``validation`` (the one argument contract), ``moments`` (Moments and the Chan merge),
``xp`` (array-namespace lookup), ``closed_form`` and ``alternatives`` (the normalizations
in closed form on the array API), ``torch_stats`` (the same shifted sums in torch ops, the
statistics of ``bncourse.torch``).  Nothing here imports a backend or a kernel; only
``torch_stats`` imports torch.
"""
