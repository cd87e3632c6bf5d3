"""Sparse first encoder layer: is a sparse product faster than densifying the ATAC minibatch?

    python benchmarks/sparse_first_layer.py --cells 128 --peaks 100000 --hidden 64 --density 0.03 --threads 1

Times forward + backward (weight gradient) of the encoder's first layer, ``x @ W.T`` with ``x``
a binary ``cells x peaks`` minibatch at ``--density``, four ways: dense ``F.linear`` on the
densified batch (what REMADOM does), ``torch.sparse.mm`` on COO, ``@`` on CSR, and
``F.embedding_bag`` over the CSR columns (with the weight as ``W.T`` view and as a
``peaks x hidden`` parameter). All four give the same output and weight gradient (checked).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=128)
    p.add_argument("--peaks", type=int, default=100_000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--density", type=float, default=0.03)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(args.cells, args.peaks) < args.density).float()
    weight = torch.randn(args.hidden, args.peaks, requires_grad=True)
    weight_t = weight.detach().t().contiguous().requires_grad_(True)
    coo, csr = x.to_sparse_coo().coalesce(), x.to_sparse_csr()
    cols, offsets, values = csr.col_indices(), csr.crow_indices()[:-1], csr.values()
    ways = {
        "dense F.linear (current)": lambda: F.linear(x, weight),
        "torch.sparse.mm COO": lambda: torch.sparse.mm(coo, weight.t()),
        "CSR @ W.T": lambda: csr @ weight.t(),
        "embedding_bag, W.T view": lambda: F.embedding_bag(cols, weight.t(), offsets, mode="sum",
                                                           per_sample_weights=values),
        "embedding_bag, peaks x hidden weight": lambda: F.embedding_bag(cols, weight_t, offsets, mode="sum",
                                                                        per_sample_weights=values),
    }
    reference = F.linear(x, weight).detach()
    print(f"{args.cells} cells x {args.peaks} peaks at density {args.density} -> {args.hidden}, "
          f"{args.threads} thread(s); forward + backward, mean of {args.repeats}")
    for name, fn in ways.items():
        assert torch.allclose(fn().detach(), reference, atol=1e-3), name

        def step(fn=fn):
            weight.grad = weight_t.grad = None
            fn().sum().backward()

        print(f"  {name:40s} {_time(step, args.repeats):7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
