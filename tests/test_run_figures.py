"""Run figures: loss curves without empty panels, integer epochs; like-with-like snapshots."""

import numpy as np
import pandas as pd
import torch

from remadom.cli._figures import _like_with_like, plot_loss_curves
from remadom.nn.likelihoods import get_likelihood


def test_loss_curves_skip_zero_terms_and_draw_the_kl_weight_once(tmp_path, monkeypatch):
    rows = []
    for epoch in range(3):
        rows.append({"epoch": epoch, "step": epoch, "elbo_train": 10 - epoch, "elbo_validation": 11 - epoch,
                     "kl_global_train": 0.0, "kl_global_validation": 0.0, "kl_weight": epoch / 2,
                     "kl_weight_epoch": epoch / 2})
    csv = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    import matplotlib.figure

    saved = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.setdefault("fig", self))
    plot_loss_curves(csv, tmp_path / "loss.png")
    axes = [ax for ax in saved["fig"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["elbo", "kl_weight"]  # no always-zero kl_global panel
    assert len(axes[1].lines) == 1  # kl_weight and kl_weight_epoch are the same values
    ticks = axes[0].xaxis.get_major_locator().tick_values(0, 2)
    assert np.allclose(ticks, np.round(ticks))  # integer epochs


def test_snapshot_compares_means_of_the_same_quantity():
    obs = np.array([[0.0, 10.0], [10.0, 0.0], [2.0, 2.0]])  # noisy draws around a 50/50 expectation
    expected = np.full((3, 2), 5e3)  # a perfect model's prediction (per 10k)
    px, py, xlabel, ylabel = _like_with_like(get_likelihood("nb"), obs, expected)
    np.testing.assert_allclose(px, py)  # mean of log1p(obs) against log1p(expectation) would not be
    assert xlabel == "log1p(feature mean of counts)"
    assert ylabel == "log1p(feature mean of expected counts at the cell's library size)"
    assert _like_with_like(get_likelihood("nbmixture"), obs, obs)[3] == \
        "log1p(feature mean of expected counts, background included)"
    px, py, xlabel, _ = _like_with_like(get_likelihood("bernoulli"), obs, np.full((3, 2), 2 / 3))
    np.testing.assert_allclose(px, py)
    assert xlabel == "fraction of cells with the feature open"


def test_snapshot_of_gaussian_clr_compares_clr_values():
    obs = np.array([[0.0, 10.0, 3.0], [10.0, 0.0, 3.0]])
    logx = np.log1p(obs)
    clr = logx - logx.mean(1, keepdims=True)
    px, py, xlabel, ylabel = _like_with_like(get_likelihood("gaussian_clr"), obs, clr)
    np.testing.assert_allclose(px, py)
    assert xlabel == "feature mean of CLR of counts" and ylabel == "feature mean of predicted CLR of counts"


def _mixture_params(n_cells, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n_feat = 6
    rate_back = torch.linspace(5, 30, n_feat).expand(n_cells, -1)
    return {"rate_back": rate_back, "rate_fore": rate_back * torch.linspace(1.5, 8, n_feat),
            "mixing_logits": torch.randn(n_cells, n_feat, generator=gen) * 0.3 + 0.5,
            "theta": torch.full((n_cells, n_feat), 20.0)}


def test_nbmixture_observation_mean_is_the_mixture_mean():
    head = get_likelihood("nbmixture")(n_hidden=4, n_features=6, n_batch=1)
    params = _mixture_params(50)
    torch.testing.assert_close(head.observation_mean(params), head._dist(params).mean)
    assert bool((head.observation_mean(params) > head.expected(params)).all())  # the background adds counts
    rna = get_likelihood("nb")(n_hidden=4, n_features=6, n_batch=1)
    p = rna(torch.randn(3, 4), torch.zeros(3, 1), torch.ones(3, 1))
    torch.testing.assert_close(rna.observation_mean(p), rna.expected(p))


def test_a_perfect_adt_model_lies_on_the_diagonal_only_with_background():
    """Counts drawn from the mixture: their feature means match the observation mean, not the foreground."""
    head = get_likelihood("nbmixture")(n_hidden=4, n_features=6, n_batch=1)
    params = _mixture_params(4000)
    torch.manual_seed(0)
    obs = head.sample(params).numpy()
    px, py, _, _ = _like_with_like(head, obs, head.observation_mean(params).numpy())
    assert np.abs(px - py).max() < 0.05
    px, py_fore, _, _ = _like_with_like(head, obs, head.expected(params).numpy())
    assert np.abs(px - py_fore).max() > 0.1  # the foreground alone looks biased


def test_impute_include_background_only_changes_the_mixture_head():
    from conftest import make_mosaic_adata

    from remadom import REMADOM

    adata = make_mosaic_adata(n=40, seed=1)
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = REMADOM(adata, n_latent=2, n_hidden=8)
    model.is_trained_ = True  # the decoders' outputs, untrained, are enough to compare the two means
    assert model.module.heads["adt"].name == "nbmixture"
    with_bg = model.impute("adt", include_background=True)
    fore = model.impute("adt")
    ok = ~np.isnan(fore).all(1)
    assert ok.any() and (with_bg[ok] > fore[ok]).all()
    np.testing.assert_array_equal(model.impute("rna", include_background=True), model.impute("rna"))
