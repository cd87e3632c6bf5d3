"""Defaults of REMADOM.train (issue #13, defaults at convergence): epochs, early stopping, LR plateau schedule."""

import pytest
from conftest import make_mosaic_adata
from lightning.pytorch.callbacks import Callback

from remadom import REMADOM
from remadom.model._train_defaults import default_kl_warmup_epochs, default_max_epochs

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}


class _Record(Callback):
    """What the trainer was given: LR schedulers, early-stopping callbacks, the LR per epoch."""

    def __init__(self):
        self.schedulers, self.stoppers, self.lrs = None, None, []

    def on_train_start(self, trainer, pl_module):
        from lightning.pytorch.callbacks import EarlyStopping

        self.schedulers = list(trainer.lr_scheduler_configs)
        self.stoppers = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]

    def on_train_epoch_end(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _model():
    adata = make_mosaic_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    return REMADOM(adata, **SMALL)


def test_default_epochs_follow_scvi_heuristic():
    assert default_max_epochs(600) == 400  # small data: the full 400 (was capped at 200)
    assert default_max_epochs(20_000) == 400
    assert default_max_epochs(40_000) == 200
    assert default_max_epochs(2_000_000) == 4
    assert default_kl_warmup_epochs(400) == 50 and default_kl_warmup_epochs(8) == 2


def test_defaults_stop_early_and_lower_the_lr_on_plateau():
    rec = _Record()
    model = _model()
    # no change counts as an improvement (huge min_delta / threshold): early stopping, on by
    # default, must end a 60-epoch run after warm-up + patience, and the plateau schedule, on by
    # default, must lower the LR below the default 4e-3
    model.train(max_epochs=60, batch_size=32, kl_warmup_epochs=1, early_stopping_patience=1,
                early_stopping_min_delta=1e9, plan_kwargs={"lr_patience": 0, "lr_threshold": 1e9},
                callbacks=[rec], enable_progress_bar=False)
    assert len(rec.stoppers) == 1 and rec.stoppers[0].monitor == "elbo_validation"
    assert rec.stoppers[0].patience == 1
    assert len(rec.schedulers) == 1
    assert rec.lrs[0] <= 4e-3 and min(rec.lrs) < 4e-3
    assert len(model.history["elbo_train"]) < 10


def test_stopping_waits_for_the_kl_warmup_and_patience():
    rec = _Record()
    model = _model()
    model.train(max_epochs=3, batch_size=32, callbacks=[rec], enable_progress_bar=False)
    (stopper,) = rec.stoppers
    assert stopper.patience == 45
    assert getattr(stopper, "warmup_epochs", None) == 1  # = the KL warm-up of a 3-epoch run


def test_old_behaviour_on_request_and_without_validation_cells():
    rec = _Record()
    model = _model()
    model.train(max_epochs=4, batch_size=32, early_stopping=False, reduce_lr_on_plateau=False,
                callbacks=[rec], enable_progress_bar=False)
    assert rec.stoppers == [] and rec.schedulers == [] and len(model.history["elbo_train"]) == 4
    rec = _Record()
    model = _model()
    model.train(max_epochs=3, batch_size=32, train_size=1.0, callbacks=[rec], enable_progress_bar=False)
    assert rec.stoppers == [] and rec.schedulers == []  # nothing to monitor: both off, no error


@pytest.mark.parametrize("name", ["early_stopping", "reduce_lr_on_plateau"])
def test_stopping_switches_must_be_booleans(name):
    with pytest.raises(TypeError, match=f"{name}='yes'; pass True, False or None"):
        _model().train(max_epochs=1, **{name: "yes"})


def test_early_stopping_ends_with_the_best_validation_weights():
    """The module ends with the weights of its best validation-ELBO epoch, not the last one's."""
    import torch

    class Snapshots(Callback):
        def __init__(self):
            self.states, self.elbo = [], []

        def on_validation_epoch_end(self, trainer, pl_module):
            self.elbo.append(float(trainer.callback_metrics["elbo_validation"]))
            self.states.append({k: t.detach().clone() for k, t in pl_module.module.state_dict().items()})

    snaps = Snapshots()
    model = _model()
    model.train(max_epochs=25, batch_size=32, kl_warmup_epochs=2, lr=3e-2, callbacks=[snaps],
                enable_progress_bar=False)
    eligible = range(2, len(snaps.elbo))  # after the warm-up
    best = min(eligible, key=snaps.elbo.__getitem__)
    final = model.module.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snaps.states[best].items())
    if best != len(snaps.elbo) - 1:  # the last epoch's weights differ, so the check can fail
        assert not all(torch.equal(final[k], v) for k, v in snaps.states[-1].items())


def test_best_state_survives_a_checkpoint():
    """RestoreBestState's best weights are part of a Lightning checkpoint, so ``--resume`` ends on the same epoch."""
    from types import SimpleNamespace

    import torch

    from remadom.model._train_defaults import RestoreBestState

    module = torch.nn.Linear(3, 2)
    pl_module = SimpleNamespace(module=module)
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=5, callback_metrics={"elbo_validation": 1.0})
    before = RestoreBestState(warmup_epochs=2)
    before.on_validation_epoch_end(trainer, pl_module)
    best = {k: v.clone() for k, v in module.state_dict().items()}

    resumed = RestoreBestState(warmup_epochs=2)
    resumed.load_state_dict(torch.load(_roundtrip(before.state_dict()), weights_only=True))
    with torch.no_grad():
        module.weight.add_(1.0)
    trainer.current_epoch, trainer.callback_metrics = 6, {"elbo_validation": 2.0}  # worse than before
    resumed.on_validation_epoch_end(trainer, pl_module)
    resumed.on_train_end(trainer, pl_module)
    assert resumed.best == 1.0 and resumed.best_epoch == 6  # the epoch seen before the interruption
    for key, value in best.items():
        torch.testing.assert_close(module.state_dict()[key], value)


def _roundtrip(obj):
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer
