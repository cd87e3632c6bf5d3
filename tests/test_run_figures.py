"""Run figures: loss curves without empty panels, integer epochs; like-with-like snapshots."""

import numpy as np
import pandas as pd

from remadom.cli._figures import _like_with_like, plot_loss_curves
from remadom.modalities import ModalitySpec


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
    spec = ModalitySpec(name="rna", kind="rna", attr="layers", key=None, likelihood="nb")
    obs = np.array([[0.0, 10.0], [10.0, 0.0]])  # noisy draws around a 50/50 expectation
    expected = np.full((2, 2), 5e3)  # a perfect model's prediction (per 10k)
    px, py, unit, what = _like_with_like(spec, obs, expected)
    np.testing.assert_allclose(px, py)  # mean of log1p(obs) against log1p(expectation) would not be
    assert "mean" in unit and "mean" in what
    adt = ModalitySpec(name="adt", kind="adt", attr="obsm", key="X_adt", likelihood="nbmixture")
    assert "foreground only" in _like_with_like(adt, obs, obs)[3]
