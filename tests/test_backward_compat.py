"""A model saved by REMADOM 0.1.0 must keep loading and give the same latent."""

from pathlib import Path

import numpy as np
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.nn.likelihoods import BernoulliHead, PeakVIBernoulliHead

SAVED = Path(__file__).parent / "data" / "tiny_model_0.1.0"


def test_model_saved_by_0_1_0_loads_with_same_latent():
    adata = make_mosaic_adata(n=60, seed=3)  # the data it was trained on (see tests/data/README.md)
    model = REMADOM.load(SAVED, adata=adata)
    np.testing.assert_allclose(
        model.get_latent_representation(), np.load(SAVED / "latent.npy"), rtol=1e-5, atol=1e-6
    )
    assert model.modality_names == ["rna", "atac", "adt"]


def test_atac_head_of_0_1_0_model_keeps_its_product_form():
    """The ATAC decoder changed to a logit-additive form; older files keep the PeakVI product form."""
    adata = make_mosaic_adata(n=60, seed=3)
    model = REMADOM.load(SAVED, adata=adata)
    assert type(model.module.heads["atac"]) is PeakVIBernoulliHead
    pred = model.impute("atac", from_modalities=["rna"])
    assert pred.shape == (60, adata.obsm["X_atac"].shape[1]) and np.all((pred >= 0) & (pred <= 1))
    fresh = REMADOM(adata)
    assert type(fresh.module.heads["atac"]) is BernoulliHead
