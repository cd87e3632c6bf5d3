"""``encoder_inputs="auto"``: CLR ADT encoder input when a batch is confounded with its modalities."""

import numpy as np
import pytest
from conftest import make_mosaic_adata, make_study_adata

from remadom import REMADOM

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}




def test_auto_uses_clr_adt_input_when_a_batch_is_confounded():
    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    assert model.confounded_batches_ == [0, 1]  # batch codes of b1 and b2
    assert model.module.encoders["adt"].input.transform == "clr"
    assert model.module.encoders["rna"].input.transform == "log1p"
    assert model.module.batch_effect == "nonlinear"  # decoders unchanged
    off = REMADOM(adata, encoder_inputs=None, **SMALL)
    assert off.module.encoders["adt"].input.transform == "log1p"
    chosen = REMADOM(adata, encoder_inputs={"rna": "identity"}, **SMALL)
    assert chosen.module.encoders["rna"].input.transform == "identity"
    assert chosen.module.encoders["adt"].input.transform == "log1p"


def test_split_batch_is_confounded_too():
    """b1 paired, b2 split into RNA-only and ADT-only halves (as bmmc_cite_mosaic3)."""
    adata = make_study_adata()
    b2 = (adata.obs["batch"] == "b2").to_numpy()
    half = b2 & (np.arange(adata.n_obs) % 2 == 0)
    adata.obs["has_rna"] = ~b2 | half
    adata.obs["has_adt"] = ~b2 | ~half
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    assert model.confounded_batches_ == [0, 1]
    assert model.module.encoders["adt"].input.transform == "clr"


def test_auto_keeps_defaults_on_an_ordinary_mosaic():
    adata = make_mosaic_adata()  # every availability group occurs in both batches
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    assert model.confounded_batches_ == []
    assert model.module.encoders["adt"].input.transform == "log1p"


def test_unknown_encoder_inputs_error():
    adata = make_mosaic_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    with pytest.raises(ValueError, match="unknown modalities"):
        REMADOM(adata, encoder_inputs={"protein": "clr"}, **SMALL)
    with pytest.raises(ValueError, match="encoder_inputs="):
        REMADOM(adata, encoder_inputs="clr", **SMALL)
