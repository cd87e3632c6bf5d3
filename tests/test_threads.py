"""remadom._threads: numba code runs with bounded threads, and torch's thread count is kept."""

import pytest
import torch

from remadom._threads import numba_threads

numba = pytest.importorskip("numba")


def test_numba_threads_bounded_inside_and_restored_after():
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
        torch.set_num_threads(1)  # numba / OpenMP code may change it; the helper puts it back
    assert numba.get_num_threads() == numba_before
    assert torch.get_num_threads() == torch_before
