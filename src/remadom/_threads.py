"""Thread hygiene around numba code (umap-learn, pynndescent) in a process that also trains.

After a UMAP in a process, the next training run on a 2-core machine became 28x slower
(20 epochs: 3.5 s before, 99 s after) until ``NUMBA_NUM_THREADS=1``: numba's OpenMP worker
pool, launched with one thread per core by the first parallel UMAP call, competes with
torch's own OpenMP threads for the same cores. :func:`numba_threads` runs numba code with
a bounded thread count so that the pool does not oversubscribe the cores torch uses, and
puts torch's thread count back afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["numba_threads"]


@contextmanager
def numba_threads(n: int = 1) -> Iterator[None]:
    """Run the enclosed numba code (e.g. a UMAP) with at most ``n`` numba threads.

    Before numba is first imported, ``NUMBA_NUM_THREADS`` is set to ``n`` unless the user
    set it, and before its worker pool is first launched its configured size is capped at ``n``,
    so that the pool is launched that small; once launched,
    :func:`numba.set_num_threads` bounds the threads its parallel regions use, and the
    previous count is restored on exit. torch's intra-op thread count is restored too.

    Parameters
    ----------
    n
        Numba threads for the enclosed code.
    """
    import torch

    torch_threads = torch.get_num_threads()
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    import numba
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):  # imported (e.g. by scanpy) but no pool yet
        numba.config.NUMBA_NUM_THREADS = min(n, numba.config.NUMBA_NUM_THREADS)
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)
        torch.set_num_threads(torch_threads)
