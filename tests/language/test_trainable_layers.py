"""`trainable_layers` on a transformer (muNet's layer cloning): only the listed parts train, the rest is frozen in
the trainer (no gradients, no optimizer state, eval mode) and counted as frozen; bad entries are located `check`
errors (tests/corpus/cross/trainable_layers_*.yaml pin the locations)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmspec import api
from mmspec.blocks.transformer import is_frozen
from mmspec.errors import SpecError
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).parent / "specs" / "gated_frozen_lm.yaml"  # lm: 4 layers, gated cross-attention in 0 and 2
OWN_STACK = "encoders.lm.stack_trainable=true"


def test_only_the_listed_parts_train_and_the_rest_counts_as_frozen():
    loaded = api.load_spec(SPEC, sets=[OWN_STACK, "encoders.lm.trainable_layers=[2, final_norm]"])
    torch.manual_seed(0)
    trainer = Trainer(loaded)
    lm = trainer.model.components["lm"]
    params = dict(lm.named_parameters())
    trained = {k for k, p in params.items() if p.requires_grad}
    assert trained == {k for k in params if k.startswith(("layers.2.", "final_norm."))}
    assert any(".cross_" in k for k in trained)  # the whole layer, its cross-attention included
    in_optimizer = {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}
    assert {k for k in params if id(params[k]) in in_optimizer} == trained
    before = {k: p.detach().clone() for k, p in params.items()}
    trainer.fit(synthetic_batch(loaded, 4, 0), 2, 0)
    changed = {k for k in params if not torch.equal(before[k], params[k])}
    assert changed and changed <= trained
    parts = [m for m in lm.modules() if is_frozen(m)]
    assert parts and not any(m.training for p in parts for m in p.modules()) and lm.layers[2].training
    counts = api.param_counts(api.build(loaded, device="meta"))  # tok and the head are `trainable: false`
    assert counts["trainable"] == sum(params[k].numel() for k in trained)


@pytest.mark.parametrize(("sets", "message"), [
    ([OWN_STACK, "encoders.lm.trainable_layers=[4]"], "trainable_layers[0] is layer 4, but the stack has 4 layers"),
    ([OWN_STACK, "encoders.lm.trainable_layers=[final_nrom]"], "(did you mean 'final_norm'?)"),
    ([OWN_STACK, "encoders.lm.trainable_layers=[1, final_norm, 1]"], "names 1 twice (again at [2])"),
    (["encoders.lm.trainable_layers=[1]"], "stack_trainable: false freezes every layer"),
    (["encoders.tok.trainable_layers=[embed]"], "trainable: false freezes the whole encoder"),
])
def test_bad_entries_are_check_errors(sets, message):
    with pytest.raises(SpecError) as e:
        api.load_spec(SPEC, sets=sets)
    assert "error[check]" in str(e.value) and message in str(e.value)
