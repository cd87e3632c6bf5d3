"""No load path executes code from a file: real pickle payloads that would create a marker file.

Each payload, if unpickled, calls ``open(marker, "w")``. Every test asserts that loading is
refused *and* that the marker does not exist afterwards.
"""

import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.cli.main import main
from remadom.model._io import SAFE_NUMPY_GLOBALS, ModelFileError

ROOT = Path(__file__).resolve().parents[1]
SAVED_0_1_0 = Path(__file__).parent / "data" / "tiny_model_0.1.0"


class Payload:
    """Unpickling this object creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _setup(adata):
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt",
                          batch_key="batch")
    return adata


def _evil_model_dir(tmp_path, marker, bare=False):
    """A copy of the 0.1.0 model whose model.pt carries a payload (torch zip file, or a bare pickle)."""
    d = tmp_path / "evil_model"
    shutil.copytree(SAVED_0_1_0, d)
    good = torch.load(SAVED_0_1_0 / "model.pt", weights_only=False)  # our own fixture: trusted
    if bare:
        with open(d / "model.pt", "wb") as fh:
            pickle.dump(Payload(marker), fh)
    else:
        good["attr_dict"]["history_"] = Payload(marker)
        torch.save(good, d / "model.pt")
    return d


@pytest.mark.parametrize("bare", [False, True], ids=["payload-in-model-file", "bare-payload"])
@pytest.mark.parametrize("matching_data", [True, False], ids=["matching-data", "other-data"])
def test_load_refuses_a_payload_model_file(tmp_path, bare, matching_data):
    marker = tmp_path / "pwned"
    d = _evil_model_dir(tmp_path, marker, bare=bare)
    adata = make_mosaic_adata(n=60, seed=3) if matching_data else make_mosaic_adata(n=40, n_genes=7, seed=1)
    with pytest.raises(ModelFileError, match="refusing to load"):
        REMADOM.load(d, adata=adata)
    assert not marker.exists()


def test_load_registry_refuses_a_payload(tmp_path):
    marker = tmp_path / "pwned"
    d = _evil_model_dir(tmp_path, marker)
    with pytest.raises(ModelFileError, match="refusing to load"):
        REMADOM.load_registry(d)
    assert not marker.exists()


def test_model_saved_now_loads_with_the_strict_reader_only(tmp_path):
    """A file written by the current code needs nothing beyond tensors, builtins and numpy arrays."""
    adata = _setup(make_mosaic_adata(n=40, seed=0))
    model = REMADOM(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, batch_size=40, enable_progress_bar=False)
    model.save(tmp_path / "m")
    with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
        saved = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert "history_" in saved["attr_dict"]
    loaded = REMADOM.load(tmp_path / "m", adata=adata)
    assert list(loaded.history_["elbo_train"].columns) == ["elbo_train"]
    assert loaded.history_["elbo_train"].equals(model.history_["elbo_train"])


def test_save_refuses_an_attribute_the_safe_reader_would_refuse(tmp_path):
    adata = _setup(make_mosaic_adata(n=40, seed=0))
    model = REMADOM(adata, n_latent=2, n_hidden=8)
    model.custom_ = Payload(tmp_path / "never")
    with pytest.raises(TypeError, match="cannot save this model safely"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "model.pt").exists()
    assert not (tmp_path / "never").exists()


def test_legacy_0_1_0_file_loads_through_the_restricted_reader():
    with pytest.raises(pickle.UnpicklingError):  # not a plain weights-only file ...
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            torch.load(SAVED_0_1_0 / "model.pt", weights_only=True)
    model = REMADOM.load(SAVED_0_1_0, adata=make_mosaic_adata(n=60, seed=3))  # ... yet it loads safely
    assert model.history_["elbo_train"].shape == (1, 1)


# --------------------------------------------------------------------- CLI
TINY = ["data.mock.n_cells=80", "data.mock.n_genes=20", "data.mock.n_peaks=30", "data.mock.n_proteins=5",
        "model.n_latent=2", "model.n_hidden=8", "optim.batch_size=64", "optim.max_epochs=1",
        "logging.figures=false", "logging.snapshot_every=0"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    save = tmp_path_factory.mktemp("runs")
    code = main(["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", str(save),
                 "--no-progress", *_sets(TINY)])
    assert code == 0
    (run_dir,) = list(save.iterdir())
    return run_dir


def _copy_run(finished_run, tmp_path):
    run = tmp_path / finished_run.name
    shutil.copytree(finished_run, run)
    return run


def _resume(run, *extra):
    return main(["train", "--resume", str(run), "--no-progress", "--set", "optim.max_epochs=2", *extra])


def test_resume_refuses_a_payload_last_ckpt(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "evil": Payload(marker)}, run / "checkpoints" / "last.ckpt")
    assert _resume(run) == 3
    assert "refusing to load the checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def _point_best_checkpoint_at(run, evil):
    """Rewrite the run's clean last.ckpt so its checkpoint callbacks name ``evil`` as the best model."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    for state in ckpt["callbacks"].values():
        state["dirpath"] = str(run / "checkpoints")  # as if written in place
        state["best_model_path"] = str(evil)
        state["best_model_score"] = torch.tensor(-1e30)
        state["best_k_models"] = {str(evil): torch.tensor(-1e30)}
        state["kth_best_model_path"], state["kth_value"] = str(evil), torch.tensor(-1e30)
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")


def test_resume_ignores_a_best_model_path_outside_the_run(finished_run, tmp_path):
    """A clean last.ckpt whose best_model_path points at a payload elsewhere: never loaded, never deleted."""
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "elsewhere.ckpt"
    torch.save({"state_dict": {}, "evil": Payload(marker)}, evil)
    _point_best_checkpoint_at(run, evil)
    assert _resume(run) == 0
    assert not marker.exists() and evil.is_file()


def test_best_checkpoint_payload_inside_the_run_is_refused(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    evil = run / "checkpoints" / "best-epoch999.ckpt"
    torch.save({"state_dict": {}, "evil": Payload(marker)}, evil)
    _point_best_checkpoint_at(run, evil)
    assert _resume(run) == 3
    assert "refusing to load the checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_evaluate_refuses_a_payload_model(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    good = torch.load(run / "model" / "model.pt", weights_only=False)
    good["attr_dict"]["history_"] = Payload(marker)
    torch.save(good, run / "model" / "model.pt")
    assert main(["evaluate", str(run)]) == 3
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


def test_scvi_legacy_conversion_is_not_an_unsafe_back_door(tmp_path):
    marker = tmp_path / "pwned"
    d = _evil_model_dir(tmp_path, marker)
    with pytest.raises(NotImplementedError, match="no legacy conversion"):
        REMADOM.convert_legacy_save(d, tmp_path / "out")
    assert not marker.exists()
