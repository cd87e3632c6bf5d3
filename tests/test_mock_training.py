"""Smoke test: every mock scenario sets up and trains one epoch of REMADOM."""

import numpy as np
import pytest

import remadom
from remadom.data.mock import PROBLEM_TYPES, generate_mock_dataset

SMALL = {"n_cells": 120, "n_genes": 100, "n_peaks": 300, "n_proteins": 10}


@pytest.mark.parametrize("problem", PROBLEM_TYPES)
def test_every_scenario_trains(problem):
    adata, keys = generate_mock_dataset(problem, **SMALL)
    remadom.REMADOM.setup_anndata(adata, **keys)
    model = remadom.REMADOM(adata, n_latent=4, n_hidden=32)
    assert set(model.modality_names) == set(keys["mask_keys"])
    model.train(max_epochs=1, batch_size=64)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
