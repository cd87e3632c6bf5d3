"""Model smoke and behaviour tests: train, latent, impute, save/load on tiny mosaic data."""

import itertools

import numpy as np
import pytest
from conftest import make_mosaic_adata

from remadom import REMADOM

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 32, "n_layers": 1}


@pytest.fixture(scope="module")
def trained():
    """One small model trained once for the read-only tests of this module."""
    adata = make_mosaic_adata()
    REMADOM.setup_anndata(adata, **KEYS, labels_key="cluster")
    model = REMADOM(adata, **SMALL)
    model.train(max_epochs=12, batch_size=32, enable_progress_bar=False)
    return model, adata


def test_training_lowers_elbo_and_logs_terms(trained):
    model, _ = trained
    elbo = model.history["elbo_train"].to_numpy().ravel()
    assert elbo[-1] < elbo[0]
    for key in ("elbo_validation", "nll_rna_train", "nll_atac_validation", "nll_adt_train", "kl_weight_epoch"):
        assert key in model.history, key
    beta = model.history["kl_weight_epoch"].to_numpy().ravel()
    assert beta[0] < beta[-1] <= 1.0  # KL warm-up


@pytest.mark.parametrize("subset", [None, ["rna"], ["atac"], ["adt"], ["rna", "atac"], ["atac", "adt"]])
def test_latent_shapes_for_every_subset(trained, subset):
    model, adata = trained
    z = model.get_latent_representation(modalities=subset)
    assert z.shape == (adata.n_obs, 4) and np.isfinite(z).all()


@pytest.mark.parametrize(
    "target,source",
    [(t, list(s)) for t in ("rna", "atac", "adt") for r in (1, 2)
     for s in itertools.combinations(("rna", "atac", "adt"), r) if t not in s],
)
def test_impute_shapes_any_direction(trained, target, source):
    model, adata = trained
    out = model.impute(target, from_modalities=source)
    n_features = {"rna": adata.n_vars, "atac": adata.obsm["X_atac"].shape[1], "adt": 6}[target]
    assert out.shape == (adata.n_obs, n_features) and np.isfinite(out).all() and (out >= 0).all()


def test_impute_outputs_are_normalized(trained):
    model, _ = trained
    rna = model.impute("rna", library_size=1e4)
    np.testing.assert_allclose(rna.sum(1), 1e4, rtol=1e-3)
    atac = model.impute("atac")
    assert atac.max() <= 1.0
    ad_out = model.impute("adt", return_numpy=False, indices=np.arange(10))
    assert list(ad_out.var_names) == [f"p{i}" for i in range(6)] and ad_out.n_obs == 10
    assert model.get_normalized_expression().shape == rna.shape


def test_impute_sampling_gives_uncertainty(trained):
    model, _ = trained
    a = model.impute("adt", n_samples=3)
    b = model.impute("adt", n_samples=3)
    assert not np.allclose(a, b)


def test_reconstruction_error_and_elbo(trained):
    model, _ = trained
    err = model.get_reconstruction_error()
    assert set(err) == {"reconstruction_loss_rna", "reconstruction_loss_atac", "reconstruction_loss_adt"}
    assert np.isfinite(float(model.get_elbo()))


def test_unknown_modality_in_outputs_errors(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="unknown modalities"):
        model.impute("protein")
    with pytest.raises(ValueError, match="unknown modalities"):
        model.get_latent_representation(modalities=["peaks"])
    with pytest.raises(TypeError, match="list of modality names"):
        model.get_latent_representation(modalities="rna")


def test_save_load_gives_identical_latent(trained, tmp_path):
    model, adata = trained
    z = model.get_latent_representation()
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(tmp_path / "m", adata=adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)
    np.testing.assert_allclose(loaded.impute("adt", from_modalities=["rna"]),
                               model.impute("adt", from_modalities=["rna"]), rtol=1e-6)


def test_load_with_mismatched_features_fails(trained, tmp_path):
    model, adata = trained
    model.save(tmp_path / "m", overwrite=True)
    other = adata.copy()
    other.var_names = [f"x{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="'rna' features of this data"):
        REMADOM.load(tmp_path / "m", adata=other)
    other = adata.copy()
    other.obsm["X_adt"] = other.obsm["X_adt"].iloc[:, ::-1]
    with pytest.raises(ValueError, match="'adt' features"):
        REMADOM.load(tmp_path / "m", adata=other)


def test_mudata_end_to_end(mosaic_mdata, tmp_path):
    REMADOM.setup_mudata(mosaic_mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"},
                         batch_key="batch", labels_key="cluster")
    model = REMADOM(mosaic_mdata, **SMALL)
    model.train(max_epochs=2, batch_size=32, enable_progress_bar=False)
    z = model.get_latent_representation(mosaic_mdata)
    assert z.shape == (mosaic_mdata.n_obs, 4)
    assert model.impute("adt", from_modalities=["rna"], adata=mosaic_mdata).shape == (mosaic_mdata.n_obs, 6)
    model.save(tmp_path / "mu", overwrite=True)
    import mudata as md

    fresh = md.MuData(dict(mosaic_mdata.mod))  # a new object: loading must rebuild its view
    fresh.obs["batch"] = mosaic_mdata.obs.loc[fresh.obs_names, "batch"].to_numpy()
    fresh.obs["cluster"] = mosaic_mdata.obs.loc[fresh.obs_names, "cluster"].to_numpy()
    loaded = REMADOM.load(tmp_path / "mu", adata=fresh)
    np.testing.assert_allclose(loaded.get_latent_representation(fresh), z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alignment_on", ["batch", "availability"])
def test_modality_weight_schedule_and_alignment(mosaic_adata, alignment_on):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    model = REMADOM(mosaic_adata, **SMALL)
    model.train(max_epochs=2, batch_size=32, enable_progress_bar=False,
                modality_weights=lambda epoch: {"atac": 0.5 + epoch}, alignment_weight=1.0,
                alignment_on=alignment_on)
    assert model.history["mmd_train"].to_numpy().ravel()[-1] > 0


def test_unknown_alignment_target_errors(mosaic_adata):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    with pytest.raises(ValueError, match="alignment_on"):
        REMADOM(mosaic_adata, **SMALL).train(max_epochs=1, alignment_weight=1.0, alignment_on="donor")


def test_bf16_mixed_precision_trains_on_cpu(mosaic_adata):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    model = REMADOM(mosaic_adata, **SMALL)
    model.train(max_epochs=2, batch_size=32, precision="bf16-mixed", accelerator="cpu", enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_train"].to_numpy().astype(float)).all()
    assert np.isfinite(model.get_latent_representation()).all()


def test_training_minibatches_reach_the_module_sparse(monkeypatch):
    """scvi-tools' splitter densifies sparse batches; REMADOM's keeps ATAC sparse for the module."""
    import torch

    adata = make_mosaic_adata(n=64)
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    layouts = []
    original = type(model.module).inference

    def spy(self, x, observed, **kw):
        layouts.append(x["atac"].layout)
        return original(self, x, observed, **kw)

    monkeypatch.setattr(type(model.module), "inference", spy)
    model.train(max_epochs=1, batch_size=32, enable_progress_bar=False)
    assert layouts and all(layout == torch.sparse_csr for layout in layouts)
