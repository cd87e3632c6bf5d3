"""Data splitter that keeps sparse minibatches sparse until the module has used them."""

from __future__ import annotations

from scvi.dataloaders import DataSplitter

from .._row_reads import RowBatchAnnDataLoader


class SparseBatchDataSplitter(DataSplitter):
    """:class:`scvi.dataloaders.DataSplitter` that hands sparse minibatches to the module as they are.

    scvi-tools' splitter densifies every sparse tensor right after the transfer to the device.
    :class:`~remadom.module.RemadomModule` binarizes ATAC and computes its encoder inputs
    (``log1p``, TF-IDF) on the stored values of a sparse minibatch and densifies afterwards, which
    skips element-wise passes over the mostly-zero peak matrix.

    Its loaders read on-disk CSR matrices (a backed AnnData) with one HDF5 read per array and
    minibatch (:class:`~remadom._row_reads.RowBatchAnnDataLoader`).
    """

    data_loader_cls = RowBatchAnnDataLoader

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Leave sparse tensors sparse (the module densifies them)."""
        return batch
