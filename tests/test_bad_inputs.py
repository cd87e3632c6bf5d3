"""Bad inputs across the API and the CLI: each row asserts the exception type (or exit code) and a phrase.

Rows come from the audit in issue #15. ``REFUSED`` rows must raise; ``ACCEPTED`` rows are valid
inputs that used to be refused or to crash, and must now work.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_mosaic_adata, make_mosaic_mudata

from remadom import REMADOM
from remadom.cli.main import main
from remadom.config import ConfigError, validate_config
from remadom.model._io import ModelFileError
from remadom.model._validation import RemadomSetupError

ROOT = Path(__file__).resolve().parents[1]
SETUP = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}


def _data(n=60, seed=3, **kw):
    return make_mosaic_adata(n=n, seed=seed, **kw)


def _setup(adata=None, **kw):
    adata = _data() if adata is None else adata
    REMADOM.setup_anndata(adata, **{**SETUP, **kw})
    return adata


def _model(**kw):
    return REMADOM(_setup(), n_latent=2, n_hidden=8, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    adata = _setup()
    model = REMADOM(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, batch_size=60, enable_progress_bar=False)
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return model, adata, path


# ---------------------------------------------------------------- new data
def _renamed(adata):
    adata.var_names = [f"x{i}" for i in range(adata.n_vars)]
    return adata


def _subset_genes(adata):
    return adata[:, :20].copy()


def _set_counts(adata, value, row=0):
    dense = adata.layers["counts"].toarray()
    dense[row, 0] = value
    adata.layers["counts"] = sp.csr_matrix(dense)
    return adata


def _string_mask(adata):
    adata.obs["has_adt"] = adata.obs["has_adt"].map({True: "yes", False: "no"})
    return adata


def _drop_mask(adata):
    del adata.obs["has_adt"]
    return adata


def _no_modality_cell(adata):
    for m in ("has_rna", "has_atac", "has_adt"):
        adata.obs.loc[adata.obs_names[0], m] = False
    return adata


def _inf_adt(adata):
    adata.obsm["X_adt"].iloc[1, 1] = np.inf
    return adata


def _renamed_peaks(adata):
    adata.uns["atac_names"] = np.asarray([f"chr1:{i}" for i in range(adata.obsm["X_atac"].shape[1])])
    return adata


NEW_DATA = [
    ("renamed-genes", _renamed, RemadomSetupError, "'rna' features of this data"),
    ("fewer-genes", _subset_genes, RemadomSetupError, r"are not the 30 the model"),
    ("nan-counts", lambda a: _set_counts(a, np.nan), RemadomSetupError, "NaN or infinite"),
    ("negative-counts", lambda a: _set_counts(a, -3.0), RemadomSetupError, "negative values"),
    ("non-integer-counts", lambda a: _set_counts(a, 0.5), RemadomSetupError, "non-integer values"),
    ("string-mask", _string_mask, RemadomSetupError, "must be boolean"),
    ("missing-mask-column", _drop_mask, RemadomSetupError, r"mask column obs\['has_adt'\]"),
    ("cell-without-modality", _no_modality_cell, RemadomSetupError, "no observed modality"),
    ("inf-adt", _inf_adt, RemadomSetupError, "'adt' contains NaN or infinite"),
    ("renamed-peaks", _renamed_peaks, RemadomSetupError, "'atac' features of this data"),
    ("empty-anndata", lambda a: a[:0].copy(), RemadomSetupError, "no cells"),
]


@pytest.mark.parametrize(("change", "error", "phrase"), [r[1:] for r in NEW_DATA], ids=[r[0] for r in NEW_DATA])
def test_new_data_given_to_a_trained_model_is_checked(trained, change, error, phrase):
    model = trained[0]
    with pytest.raises(error, match=phrase):
        model.get_latent_representation(change(_data()))


def test_new_data_is_checked_by_impute_too(trained):
    with pytest.raises(RemadomSetupError, match="features of this data"):
        trained[0].impute("adt", adata=_renamed(_data()))


def test_permuted_features_are_reordered_by_name(trained):
    model, adata, _ = trained
    z = model.get_latent_representation()
    order = np.random.default_rng(0).permutation(adata.n_vars)
    permuted = _data()[:, order].copy()
    adt = permuted.obsm["X_adt"]
    permuted.obsm["X_adt"] = adt[adt.columns[::-1]]
    np.testing.assert_allclose(model.get_latent_representation(permuted), z, rtol=1e-5, atol=1e-6)
    assert list(permuted.var_names) == list(adata.var_names[order])  # the user's data is unchanged


# ------------------------------------------------------------------- rows
def _load_without_mask(trained):
    return REMADOM.load(trained[2], adata=_drop_mask(_data()))


def _corrupt_model(trained, tmp_path, content: bytes):
    d = tmp_path / "m"
    shutil.copytree(trained[2], d)
    (d / "model.pt").write_bytes(content)
    return REMADOM.load(d, adata=_data())


def _torch_list_model(trained, tmp_path):
    import torch

    d = tmp_path / "m"
    shutil.copytree(trained[2], d)
    torch.save([1, 2, 3], d / "model.pt")
    return REMADOM.load(d, adata=_data())


def _truncated(trained, tmp_path):
    raw = (trained[2] / "model.pt").read_bytes()
    return _corrupt_model(trained, tmp_path, raw[: len(raw) // 2])


def _cont_cov(value):
    adata = _data()
    adata.obs["depth"] = np.arange(adata.n_obs, dtype=float)
    adata.obs["depth"] = adata.obs["depth"].astype(object)
    adata.obs.loc[adata.obs_names[2], "depth"] = value
    if not isinstance(value, str):
        adata.obs["depth"] = adata.obs["depth"].astype(float)
    return _setup(adata, continuous_covariate_keys=["depth"])


def _no_cell_has_adt():
    adata = _data()
    adata.obs["has_adt"] = False
    return _setup(adata)


def _z_scored_adt(adata):
    """ADT z-scored and stretched: values well below -1 (the audit's NaN case before #10's true Gaussian)."""
    adt = adata.obsm["X_adt"].astype(float)
    adata.obsm["X_adt"] = (adt - adt.mean()) / (adt.std() + 1e-6) * 3
    assert adata.obsm["X_adt"].to_numpy().min() < -1
    return adata


def _mudata(**kw):
    REMADOM.setup_mudata(make_mosaic_mudata(n=60), **kw)


def _train(**kw):
    _model().train(**{"enable_progress_bar": False, **kw})


API = [
    # model arguments
    ("n_latent=0", lambda t, p: REMADOM(_setup(), n_latent=0), ValueError, "n_latent must be an integer >= 1"),
    ("n_latent=2.5", lambda t, p: REMADOM(_setup(), n_latent=2.5), ValueError, "n_latent must be an integer"),
    ("n_latent=True", lambda t, p: REMADOM(_setup(), n_latent=True), ValueError, "n_latent must be an integer"),
    ("n_hidden<0", lambda t, p: REMADOM(_setup(), n_hidden=-3), ValueError, "n_hidden must be"),
    ("n_layers=0", lambda t, p: _model(n_layers=0), ValueError, "n_layers must be"),
    ("dropout_rate=1.5", lambda t, p: _model(dropout_rate=1.5), ValueError, "dropout_rate must be >= 0.0 and < 1.0"),
    ("dropout_rate=nan", lambda t, p: _model(dropout_rate=float("nan")), ValueError, "dropout_rate must be a finite"),
    ("modality_dropout<0", lambda t, p: _model(modality_dropout=-0.1), ValueError, "modality_dropout must be"),
    ("consistency_weight<0", lambda t, p: _model(consistency_weight=-1.0), ValueError, "consistency_weight must be"),
    ("model-modality_weights-unknown", lambda t, p: _model(modality_weights={"foo": 1.0}), ValueError,  # control: already refused on main
     "unknown modalities"),
    # train arguments
    ("max_epochs=-1", lambda t, p: _train(max_epochs=-1), ValueError, "max_epochs must be an integer >= 1"),
    ("max_epochs=0", lambda t, p: _train(max_epochs=0), ValueError, "max_epochs must be"),
    ("max_epochs=True", lambda t, p: _train(max_epochs=True), ValueError, "max_epochs must be an integer"),
    ("batch_size=0", lambda t, p: _train(max_epochs=1, batch_size=0), ValueError, "batch_size must be"),
    ("batch_size<0", lambda t, p: _train(max_epochs=1, batch_size=-5), ValueError, "batch_size must be"),
    ("lr=0", lambda t, p: _train(max_epochs=1, lr=0.0), ValueError, "lr must be > 0"),
    ("lr=inf", lambda t, p: _train(max_epochs=1, lr=float("inf")), ValueError, "lr must be a finite"),
    ("lr-string", lambda t, p: _train(max_epochs=1, lr="0.1"), ValueError, "lr must be a finite number"),
    ("weight_decay<0", lambda t, p: _train(max_epochs=1, weight_decay=-1.0), ValueError, "weight_decay must be"),
    ("kl_weight=nan", lambda t, p: _train(max_epochs=1, kl_weight=float("nan")), ValueError,
     "kl_weight must be a finite"),
    ("kl_weight<0", lambda t, p: _train(max_epochs=1, kl_weight=-1.0), ValueError, "kl_weight must be >= 0"),
    ("kl_warmup<0", lambda t, p: _train(max_epochs=1, kl_warmup_epochs=-2), ValueError,
     "kl_warmup_epochs must be an integer >= 0"),
    ("train-modality_weights-unknown", lambda t, p: _train(max_epochs=1, modality_weights={"foo": 1.0}),
     ValueError, r"unknown modalities \['foo'\]"),
    ("train-modality_weights-negative", lambda t, p: _train(max_epochs=1, modality_weights={"rna": -1.0}),
     ValueError, r"modality_weights\['rna'\] must be >= 0"),
    ("train-modality_weights-list", lambda t, p: _train(max_epochs=1, modality_weights=[1.0]), TypeError,
     "must be a dict"),
    ("fp16-on-cpu", lambda t, p: _train(max_epochs=1, accelerator="cpu", precision="16-mixed"), ValueError,
     "needs a GPU"),
    ("train_size=0", lambda t, p: _train(max_epochs=1, train_size=0.0), ValueError, "train_size must be > 0"),
    ("train_size>1", lambda t, p: _train(max_epochs=1, train_size=1.5), ValueError, "train_size must be"),
    ("alignment_weight<0", lambda t, p: _train(max_epochs=1, alignment_weight=-1.0), ValueError,
     "alignment_weight must be"),
    # outputs
    ("n_samples=0", lambda t, p: t[0].impute("adt", n_samples=0), ValueError, "n_samples must be an integer >= 1"),
    ("n_samples<0", lambda t, p: t[0].impute("rna", n_samples=-1), ValueError, "n_samples must be"),
    ("library_size<0", lambda t, p: t[0].impute("rna", library_size=-1.0), ValueError, "library_size must be > 0"),
    ("library_size=nan", lambda t, p: t[0].impute("rna", library_size=float("nan")), ValueError,
     "library_size must be a finite"),
    ("empty-indices-list", lambda t, p: t[0].get_latent_representation(indices=[]), ValueError, "indices is empty"),
    ("empty-indices-array", lambda t, p: t[0].impute("adt", indices=np.array([], dtype=int)), ValueError,
     "indices is empty"),
    ("boolean-indices", lambda t, p: t[0].get_latent_representation(indices=np.ones(60, bool)), TypeError,
     "not a boolean mask"),
    ("out-of-range-indices", lambda t, p: t[0].get_latent_representation(indices=[1000]), IndexError,
     "must lie in"),
    ("inference-batch_size=0", lambda t, p: t[0].get_latent_representation(batch_size=0), ValueError,
     "batch_size must be"),
    # load
    ("load-without-mask-column", lambda t, p: _load_without_mask(t), RemadomSetupError,
     r"mask column obs\['has_adt'\]"),
    ("truncated-model.pt", _truncated, ModelFileError, "truncated or is not a model file"),
    ("text-model.pt", lambda t, p: _corrupt_model(t, p, b"hello, I am text\n"), ModelFileError,
     "(truncated or is not a model file|refusing to load)"),
    ("empty-model.pt", lambda t, p: _corrupt_model(t, p, b""), ModelFileError, "truncated or is not a model file"),
    ("model.pt-not-a-dict", _torch_list_model, ModelFileError, "is not a REMADOM model file"),
    ("no-model-dir", lambda t, p: REMADOM.load(p / "nowhere", adata=_data()), ModelFileError, "no saved model"),
    # setup
    ("batch_key-list", lambda t, p: _setup(batch_key=["batch"]), TypeError, "batch_key must be one obs column"),
    ("labels_key-int", lambda t, p: _setup(labels_key=1), TypeError, "labels_key must be one obs column"),
    ("mask_keys-list", lambda t, p: _setup(mask_keys=["has_adt"]), TypeError, "mask_keys must be a dict"),
    ("cat-cov-string", lambda t, p: _setup(categorical_covariate_keys="batch"), TypeError,
     "categorical_covariate_keys must be a list"),
    ("cont-cov-inf", lambda t, p: _cont_cov(np.inf), RemadomSetupError, "NaN or infinite"),
    ("cont-cov-string", lambda t, p: _cont_cov("high"), RemadomSetupError, "is not numeric"),
    ("cont-cov-nan", lambda t, p: _cont_cov(np.nan), RemadomSetupError, "missing values"),  # control: already refused on main
    ("empty-anndata-setup", lambda t, p: _setup(_data()[:0].copy()), RemadomSetupError, "no cells"),
    ("modality-observed-nowhere", lambda t, p: _no_cell_has_adt(), RemadomSetupError,
     "'adt' is observed in no cell"),
    ("gaussian_clr-on-negative-values", lambda t, p: _setup(_z_scored_adt(_data()), likelihoods={"adt": "gaussian_clr"}),
     RemadomSetupError, "negative values, but its likelihood 'gaussian_clr'"),
    ("mudata-modalities-empty", lambda t, p: _mudata(modalities={}), RemadomSetupError, "selects no modality"),
    ("mudata-missing-rna_layer", lambda t, p: _mudata(rna_layer="counts"), RemadomSetupError,
     r"Layer 'counts' for modality 'rna' is not in mdata.mod\['rna'\].layers"),
    ("mudata-batch_key-list", lambda t, p: _mudata(batch_key=["batch"]), TypeError, "batch_key must be one"),
]


@pytest.mark.parametrize(("call", "error", "phrase"), [r[1:] for r in API], ids=[r[0] for r in API])
def test_api_refuses_bad_input(trained, tmp_path, call, error, phrase):
    with pytest.raises(error, match=phrase):
        call(trained, tmp_path)


# ------------------------------------------------------- accepted now
def _bool_atac(adata):
    adata.obsm["X_atac"] = adata.obsm["X_atac"].astype(bool)
    return adata


def _csr_array(adata):
    adata.layers["counts"] = sp.csr_array(adata.layers["counts"])
    adata.obsm["X_atac"] = sp.csr_array(adata.obsm["X_atac"])
    return adata


def _csc_atac(adata):
    adata.obsm["X_atac"] = sp.csc_matrix(adata.obsm["X_atac"])
    return adata


def _dense_bool_atac(adata):
    adata.obsm["X_atac"] = adata.obsm["X_atac"].toarray() > 0
    return adata


ACCEPTED = [
    ("boolean-sparse-atac", _bool_atac, {}, {}),
    ("boolean-dense-atac", _dense_bool_atac, {}, {}),
    ("csr_array-rna-and-atac", _csr_array, {}, {}),
    ("csc-atac", _csc_atac, {}, {}),
    ("train_size=1.0", lambda a: a, {}, {"train_size": 1.0}),
    ("eight-cells", lambda a: a[:8].copy(), {}, {}),
    # was refused by #15 until #10 made `gaussian` a true Gaussian on the values as given
    ("gaussian-below-minus-one", _z_scored_adt, {"likelihoods": {"adt": "gaussian"}}, {}),
]


@pytest.mark.parametrize(("change", "setup_kwargs", "train_kwargs"), [r[1:] for r in ACCEPTED],
                         ids=[r[0] for r in ACCEPTED])
def test_valid_inputs_train(change, setup_kwargs, train_kwargs):
    adata = change(_data(n=40))
    before = {k: type(v) for k, v in adata.obsm.items()}
    _setup(adata, **setup_kwargs)
    model = REMADOM(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, batch_size=40, enable_progress_bar=False, **train_kwargs)
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 2) and np.isfinite(z).all()
    assert {k: type(v) for k, v in adata.obsm.items() if not k.startswith("_scvi")} == before
    assert np.isfinite(model.impute("atac")).all()


# --------------------------------------------------------------- CLI config
CONFIG = [
    ("max_epochs-true", {"optim": {"max_epochs": True}}, "not the boolean True"),
    ("max_epochs-0", {"optim": {"max_epochs": 0}}, "greater than 0"),  # control: already refused on main
    ("lr-inf", {"optim": {"lr": float("inf")}}, "finite number"),
    ("lr-nan", {"optim": {"lr": float("nan")}}, "finite number"),
    ("batch_size-0", {"optim": {"batch_size": 0}}, "greater than 0"),  # control: already refused on main
    ("n_latent-true", {"model": {"n_latent": True}}, "not the boolean True"),
    ("kl_weight-nan", {"schedule": {"kl_weight": float("nan")}}, "finite number"),
    ("modality_weight-negative", {"schedule": {"modality_weights": {"rna": -1.0}}}, "greater than or equal to 0"),
    ("val_split-1", {"data": {"val_split": 1.0}}, "less than 1"),  # control: already refused on main
    ("precision-64", {"trainer": {"precision": "64"}}, "precision"),  # control: already refused on main
    ("patience-true", {"optim": {"early_stopping_patience": True}}, "not the boolean True"),
]


@pytest.mark.parametrize(("raw", "phrase"), [r[1:] for r in CONFIG], ids=[r[0] for r in CONFIG])
def test_config_refuses_bad_values(raw, phrase):
    with pytest.raises(ConfigError, match=phrase):
        validate_config(raw, "test")


TINY = ["data.mock.n_cells=60", "data.mock.n_genes=20", "data.mock.n_peaks=30", "data.mock.n_proteins=5",
        "model.n_latent=2", "model.n_hidden=8", "optim.batch_size=64", "optim.max_epochs=1",
        "logging.figures=false", "logging.snapshot_every=0"]


def _train_cli(save_dir, *sets):
    args = ["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", str(save_dir), "--no-progress"]
    return main([*args, *[a for s in [*TINY, *sets] for a in ("--set", s)]])


def _corrupt_last_ckpt(tmp_path):
    assert _train_cli(tmp_path / "runs") == 0
    (run,) = list((tmp_path / "runs").iterdir())
    raw = (run / "checkpoints" / "last.ckpt").read_bytes()
    (run / "checkpoints" / "last.ckpt").write_bytes(raw[: len(raw) // 3])
    return main(["train", "--resume", str(run), "--no-progress", "--set", "optim.max_epochs=2"])


def _unwritable_save_dir(tmp_path):
    (tmp_path / "a_file").write_text("x")
    return _train_cli(tmp_path / "a_file" / "runs")


CLI = [
    ("unknown-accelerator", lambda p: _train_cli(p / "runs", "trainer.accelerator=tpux"), 2, "is not one of"),
    ("devices-4-on-cpu", lambda p: _train_cli(p / "runs", "trainer.accelerator=cpu", "trainer.devices=4"), 4,
     "asks for 4 device"),
    ("devices-0", lambda p: _train_cli(p / "runs", "trainer.devices=0"), 2, "must be a positive integer"),
    ("unwritable-save_dir", _unwritable_save_dir, 2, "cannot be written"),
    ("unknown-modality_weights-key", lambda p: _train_cli(p / "runs", "schedule.modality_weights={foo: 1.0}"), 2,
     r"unknown modalities \['foo'\]"),
    ("corrupted-last.ckpt", _corrupt_last_ckpt, 3, "truncated or corrupted"),
    ("missing-data-file", lambda p: _train_cli(p / "runs", "data.path=nowhere.h5ad"), 3, "does not exist"),  # control: already refused on main
    ("lr-inf-cli", lambda p: _train_cli(p / "runs", "optim.lr=.inf"), 2, "finite number"),
    ("max_epochs-true-cli", lambda p: _train_cli(p / "runs", "optim.max_epochs=true"), 2, "boolean"),
]


@pytest.mark.parametrize(("call", "code", "phrase"), [r[1:] for r in CLI], ids=[r[0] for r in CLI])
def test_cli_exit_category(tmp_path, capsys, call, code, phrase):
    assert call(tmp_path) == code
    assert re.search(phrase, capsys.readouterr().err)


def test_data_error_leaves_no_run_directory(tmp_path):
    assert _train_cli(tmp_path / "runs", "data.path=nowhere.h5ad") == 3
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_setup_error_leaves_no_run_directory(tmp_path):
    assert _train_cli(tmp_path / "runs", "data.adt_obsm_key=X_nope") == 3
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_model_build_error_marks_the_manifest_failed(tmp_path):
    import json

    assert _train_cli(tmp_path / "runs", "model.likelihoods={foo: nb}") == 2
    (run,) = list((tmp_path / "runs").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "cannot build the model" in manifest["error"]


def test_anndata_is_not_modified_by_conversion():
    adata = _csc_atac(_data(n=40))
    atac = adata.obsm["X_atac"]
    _setup(adata)
    assert adata.obsm["X_atac"] is atac and sp.issparse(atac) and atac.format == "csc"
    assert isinstance(adata.obsm["_scvi_remadom_X_atac"], sp.csr_matrix)


# ------------------------------------------------------- MuData cache
def test_mudata_changed_after_setup_is_detected():
    mdata = make_mosaic_mudata(n=60)
    REMADOM.setup_mudata(mdata, batch_key="batch")
    mdata.mod["adt"].X = mdata.mod["adt"].X * 2
    with pytest.raises(RemadomSetupError, match="changed .* after setup_mudata"):
        REMADOM(mdata)


def test_mudata_changed_after_training_is_read_afresh():
    mdata = make_mosaic_mudata(n=60)
    REMADOM.setup_mudata(mdata, batch_key="batch")
    model = REMADOM(mdata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, batch_size=60, enable_progress_bar=False)
    z = model.get_latent_representation(mdata)
    mdata.mod["adt"].X = mdata.mod["adt"].X * 5
    z_new = model.get_latent_representation(mdata)
    assert z_new.shape == z.shape and not np.allclose(z_new, z)
    np.testing.assert_allclose(model.get_latent_representation(), z)  # the training view is unchanged
