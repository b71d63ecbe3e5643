"""The benchmark's one exception (it was ``mlx_magic.errors.BenchError``)."""


class BenchError(RuntimeError):
    """A cell or a process of the benchmark failed."""
