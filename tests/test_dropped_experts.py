"""Training skips the experts modality dropout leaves out of the fusion (#14), unless consistency or the paired anchor needs them."""

import torch
from test_module import make_module, make_tensors


def _encoded_rows(module, tensors, seed=3):
    rows = {}
    for name, encoder in module.encoders.items():
        original = encoder.encode

        def spy(h, name=name, original=original):
            rows[name] = h.shape[0]
            return original(h)

        encoder.encode = spy
    module.train()
    torch.manual_seed(seed)
    _, _, out = module(tensors)
    return rows, out


def test_dropped_experts_are_not_computed_and_the_loss_is_unchanged():
    tensors = make_tensors()
    skipping, out = _encoded_rows(make_module(modality_dropout=0.6, dropout_rate=0.0), tensors)
    # a vanishing consistency weight computes every observed expert (as training did before)
    every, out_every = _encoded_rows(make_module(modality_dropout=0.6, dropout_rate=0.0, consistency_weight=1e-30),
                                     tensors)
    assert sum(skipping.values()) < sum(every.values())
    assert all(skipping[m] <= every[m] for m in skipping)
    # the same draws of the modality-dropout mask: the same fused posterior and loss
    torch.testing.assert_close(out.loss, out_every.loss, rtol=1e-6, atol=1e-6)


def test_paired_anchor_computes_every_observed_expert():
    """The anchor compares each observed expert with the joint: a dropped expert must still be encoded."""
    tensors = make_tensors()
    skipping, _ = _encoded_rows(make_module(modality_dropout=0.6, dropout_rate=0.0), tensors)
    anchored, _ = _encoded_rows(make_module(modality_dropout=0.6, dropout_rate=0.0, paired_anchor_weight=1.0),
                                tensors)
    every, _ = _encoded_rows(make_module(modality_dropout=0.6, dropout_rate=0.0, consistency_weight=1e-30), tensors)
    assert anchored == every
    assert sum(anchored.values()) > sum(skipping.values())
