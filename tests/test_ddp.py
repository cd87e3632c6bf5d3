"""Multi-device training through Lightning DDP (2 gloo processes on CPU) and the precision default."""

import numpy as np
import pytest
import torch

from remadom.train import default_precision


@pytest.mark.parametrize(
    ("accelerator", "cuda", "bf16", "expected"),
    [
        ("cpu", True, True, None),
        ("auto", False, False, None),
        ("gpu", True, True, "bf16-mixed"),
        ("cuda", True, True, "bf16-mixed"),
        ("auto", True, True, "bf16-mixed"),
        ("gpu", True, False, None),  # e.g. a V100: no bf16, stay in float32
        ("mps", False, False, None),
    ],
)
def test_default_precision(monkeypatch, accelerator, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert default_precision(accelerator) == expected


def _model(n_cells=256):
    from conftest import make_mosaic_adata

    import remadom

    adata = make_mosaic_adata(n=n_cells)
    remadom.REMADOM.setup_anndata(
        adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch"
    )
    # no dropout of any kind, so the only randomness left is the split, the batches and z's noise
    return adata, remadom.REMADOM(adata, n_hidden=16, n_latent=4, modality_dropout=0.0, dropout_rate=0.0)


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process_and_save_load(tmp_path):
    """Same global batch (2 x 32 vs 64): per-epoch train ELBO within 5 %; the trained weights come back and load."""
    import scvi

    import remadom

    epochs = 4
    scvi.settings.seed = 0
    _, single = _model()
    single.train(max_epochs=epochs, batch_size=64, accelerator="cpu", devices=1, enable_progress_bar=False)
    scvi.settings.seed = 0
    adata, ddp = _model()
    init = {k: v.clone() for k, v in ddp.module.state_dict().items()}
    ddp.train(max_epochs=epochs, batch_size=32, accelerator="cpu", devices=2, strategy="ddp_spawn",
              enable_progress_bar=False)
    a = single.history["elbo_train"].to_numpy(dtype=float).ravel()
    b = ddp.history["elbo_train"].to_numpy(dtype=float).ravel()
    assert len(a) == len(b) == epochs
    assert b[-1] < b[0]  # DDP training learned
    np.testing.assert_allclose(b, a, rtol=0.05)
    # the main process holds the trained (rank-0) weights, not the initial ones
    moved = [k for k, v in ddp.module.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, init[k])]
    assert moved
    z = ddp.get_latent_representation()
    ddp.save(tmp_path / "ddp", overwrite=True)
    loaded = remadom.REMADOM.load(tmp_path / "ddp", adata=adata)
    np.testing.assert_allclose(loaded.get_latent_representation(), z, atol=1e-5)


@pytest.mark.slow
def test_ddp_on_backed_data_matches_one_process(tmp_path):
    """strategy="ddp" (each rank re-runs the script and opens the file) on an .h5ad read with read_h5ad_backed:
    2 gloo processes x 32 cells vs one process x 64, per-epoch train ELBO within 5 %; the model loads."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import remadom
    from remadom.data import read_h5ad_backed, write_scale_dataset

    path = write_scale_dataset(tmp_path / "tiny.h5ad", n_cells=320, n_genes=40, n_peaks=400, n_proteins=6,
                               chunk_cells=128, seed=1)
    script = Path(__file__).with_name("_ddp_backed_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    curves = {}
    for name, extra in (("ddp", ["--devices", "2"]), ("single", ["--devices", "1"])):
        out = tmp_path / name
        out.mkdir()
        proc = subprocess.run([sys.executable, str(script), str(path), str(out), *extra], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((out / "elbo.json").read_text())
        assert result["isbacked"]
        curves[name] = np.asarray(result["elbo_train"])
    assert len(curves["ddp"]) == 3 and curves["ddp"][-1] < curves["ddp"][0]
    np.testing.assert_allclose(curves["ddp"], curves["single"], rtol=0.05)
    loaded = remadom.REMADOM.load(tmp_path / "ddp" / "model", adata=read_h5ad_backed(path))
    assert np.isfinite(loaded.get_latent_representation()).all()
