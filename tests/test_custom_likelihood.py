"""Adding a likelihood is adding one class: a test-only Laplace head, registered here, trains end to end."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Laplace

from remadom import REMADOM, RemadomSetupError
from remadom.nn.likelihoods import LIKELIHOODS, LikelihoodHead, register_likelihood


class LaplaceHead(LikelihoodHead):
    """Laplace on the values as given, learned per-feature scale (test only)."""

    name = "laplace_test"
    requires_nonnegative = False
    default_encoder_input = "identity"

    def __init__(self, n_hidden: int, n_features: int, n_batch: int, feature_median: np.ndarray | None = None):
        super().__init__(n_hidden, n_features, n_batch)
        self.loc_layer = nn.Linear(n_hidden, n_features)
        self.log_scale = nn.Parameter(torch.zeros(n_features))
        if feature_median is not None:
            with torch.no_grad():
                self.loc_layer.bias.copy_(torch.as_tensor(feature_median, dtype=torch.float32))

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        return {"feature_median": np.median(np.asarray(x_observed), axis=0).astype(np.float32)}

    def forward(self, h, batch_index, library):
        return {"loc": self.loc_layer(h).float(), "scale": torch.exp(self.log_scale).expand(h.shape[0], -1)}

    def nll(self, x, params):
        return -Laplace(params["loc"].float(), params["scale"].float()).log_prob(x.float()).sum(-1)

    def expected(self, params):
        return params["loc"]


@pytest.fixture
def laplace_registered():
    register_likelihood(LaplaceHead)
    yield LaplaceHead
    LIKELIHOODS.pop(LaplaceHead.name)


def test_a_head_registered_in_the_test_suite_trains_imputes_and_reloads(mosaic_adata, laplace_registered, tmp_path):
    rng = np.random.default_rng(0)
    mosaic_adata.obsm["X_signal"] = rng.normal(-1.0, 1.0, size=(mosaic_adata.n_obs, 4)).astype(np.float32)
    REMADOM.setup_anndata(mosaic_adata, modalities={
        "rna": {"layer": "counts"},
        "signal": {"obsm": "X_signal", "kind": "counts", "likelihood": "laplace_test"},
    }, batch_key="batch")
    model = REMADOM(mosaic_adata, n_latent=3, n_hidden=16)
    head = model.module.heads["signal"]
    assert isinstance(head, LaplaceHead)
    np.testing.assert_allclose(head.loc_layer.bias.detach().numpy(),
                               np.median(mosaic_adata.obsm["X_signal"], axis=0), rtol=1e-5)
    model.train(max_epochs=2, batch_size=64)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    pred = model.impute("signal", from_modalities=["rna"])
    assert pred.shape == (mosaic_adata.n_obs, 4) and np.isfinite(pred).all()
    model.save(tmp_path / "m")
    loaded = REMADOM.load(tmp_path / "m", adata=mosaic_adata)
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5)


def test_a_registered_head_is_checked_against_the_data(mosaic_adata, laplace_registered):
    class CountsOnly(LaplaceHead):
        name = "laplace_counts_test"
        requires_counts = True

    register_likelihood(CountsOnly)
    try:
        mosaic_adata.obsm["X_signal"] = np.full((mosaic_adata.n_obs, 2), -0.5, dtype=np.float32)
        with pytest.raises(RemadomSetupError, match="negative values"):
            REMADOM.setup_anndata(mosaic_adata, modalities={
                "signal": {"obsm": "X_signal", "likelihood": "laplace_counts_test"}})
    finally:
        LIKELIHOODS.pop(CountsOnly.name)
