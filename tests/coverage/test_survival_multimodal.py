"""Multimodal survival and tabular models (SU-06 Cheerla & Gevaert, SU-07 MultiSurv, SU-08 Wide & Deep,
SU-09 Pölsterl et al.): presence masks (ONNX Runtime == eager for every subset of present modalities, missing
values ignored, multimodal dropout training-only), parameter counts against the official configurations
(tests/multimodal_survival_references.py), the new components against direct computations, located misuse
errors, and `fit` lowering each tiny spec's loss."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import multimodal_survival_references as R
import numpy as np
import onnx
import onnxruntime as ort
import polsterl_references as PL
import pytest
import torch
import torch.nn.functional as F

from mmspec.api import build, capture, export, load_spec, optimize, param_counts
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
ATOL, RTOL = 1e-5, 1e-4


def _count(stem: str) -> int:
    return param_counts(build(load_spec(SPECS / f"{stem}.yaml"), device="meta"))["total"]


def _reference(make) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in make().parameters())


@pytest.mark.parametrize(("stem", "make"), [("multisurv", R.multisurv), ("cheerla", R.cheerla),
                                            ("wide_deep", R.wdl), ("polsterl", PL.WidePointNet)])
def test_canonical_counts_equal_the_official_configurations(stem, make):
    assert _count(stem) == _reference(make)


class Exported:
    """A tiny spec built eagerly (eval mode) and exported to ONNX, with an ORT session on the file."""

    def __init__(self, stem: str, tmp: Path):
        self.loaded = load_spec(SPECS / f"{stem}.yaml", "tiny")
        self.model = build(self.loaded).eval()
        path = tmp / f"{stem}.onnx"
        export(optimize(capture(self.model))[0], self.loaded, path)
        self.onnx = onnx.load(path)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def inputs(self, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
        return make_inputs(self.loaded.plan, {**trace_sizes(self.loaded.plan), "batch": batch}, seed=seed)

    def both(self, inputs: dict[str, torch.Tensor]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        got = self.session.run(None, {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            eager = [t.numpy() for t in self.model(inputs)]
        return got, eager


@pytest.fixture(scope="module")
def multisurv(tmp_path_factory):
    return Exported("multisurv", tmp_path_factory.mktemp("multisurv"))


@pytest.fixture(scope="module")
def cheerla(tmp_path_factory):
    return Exported("cheerla", tmp_path_factory.mktemp("cheerla"))


def _subsets(names: list[str]) -> list[tuple[int, ...]]:
    return list(itertools.product((0, 1), repeat=len(names)))


@pytest.mark.parametrize("spec", ["multisurv", "cheerla"])
def test_onnx_equals_eager_for_every_subset_of_present_modalities(spec, request):
    """Each subset once as a whole batch, and all subsets together as the rows of one batch."""
    exported = request.getfixturevalue(spec)
    flags = sorted(gi.name for gi in exported.loaded.plan.graph_inputs if gi.field == "present")
    subsets = _subsets(flags)
    assert len(subsets) == 2 ** (4 if spec == "multisurv" else 3)
    mixed = exported.inputs(len(subsets))
    for name, column in zip(flags, torch.tensor(subsets).T, strict=True):
        mixed[name] = column.clone()  # row r: subset r
    cases = [mixed]
    for subset in subsets:
        inputs = exported.inputs(3, seed=sum(subset) + 2)
        cases.append({**inputs, **{n: torch.full((3,), v) for n, v in zip(flags, subset, strict=True)}})
    for inputs in cases:
        got, eager = exported.both(inputs)
        for a, b in zip(got, eager, strict=True):
            np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("spec", ["multisurv", "cheerla"])
def test_values_of_a_missing_modality_do_not_reach_the_output(spec, request):
    exported = request.getfixturevalue(spec)
    inputs = exported.inputs(6)
    optional = [gi for gi in exported.loaded.plan.graph_inputs if gi.field == "present"]
    for flag in optional:
        missing = {**inputs, flag.name: torch.zeros(6, dtype=torch.int64)}
        values = next(gi.name for gi in exported.loaded.plan.graph_inputs
                      if gi.modality == flag.modality and gi.field != "present")
        changed = {**missing, values: missing[values].flip(0)}  # other patients' values
        base_ort, base_eager = exported.both(missing)
        new_ort, new_eager = exported.both(changed)
        for a, b in zip(base_ort + base_eager, new_ort + new_eager, strict=True):
            np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL)
        present = exported.both({**changed, flag.name: torch.ones(6, dtype=torch.int64)})[1]
        assert not np.allclose(present[0], new_eager[0], atol=1e-4), f"{flag.name}: present values are ignored"


def test_multisurv_fuses_by_max_over_the_present_modalities(multisurv):
    inputs = multisurv.inputs(16)
    nets = ["clinical_net", "mrna_net", "mirna_net", "dnam_net", "cnv_net"]
    with torch.no_grad():
        values = multisurv.model.node_values(inputs)
    flags = [torch.ones(16, dtype=torch.bool)] + [inputs[f"{m}_present"] == 1 for m in ("mrna", "mirna", "dnam",
                                                                                          "cnv")]
    for row in range(16):
        present = [values[n]["embedding"][row] for n, f in zip(nets, flags, strict=True) if f[row]]  # D each
        torch.testing.assert_close(values["fused"]["fused"][row], torch.stack(present).amax(0), atol=0, rtol=0)


def test_cheerla_averages_the_present_embeddings_and_gives_zeros_when_none_is(cheerla):
    inputs = cheerla.inputs(8)
    for name in ("clinical_present", "mirna_present", "gene_present"):
        inputs[name][0] = 0  # row 0: no modality at all
    with torch.no_grad():
        values = cheerla.model.node_values(inputs)
    nets = {"clinical": "clinical_net", "mirna": "mirna_net", "gene": "gene_net"}
    for row in range(8):
        present = [values[n]["embedding"][row] for m, n in nets.items() if inputs[f"{m}_present"][row] == 1]
        expected = torch.stack(present).mean(0) if present else torch.zeros(8)
        torch.testing.assert_close(values["fused"]["fused"][row], expected, atol=1e-6, rtol=1e-5)


def test_multimodal_dropout_hides_modalities_in_training_only(cheerla):
    ops = {n.op_type for n in cheerla.onnx.graph.node}
    assert not ops & {"RandomUniform", "RandomUniformLike", "Bernoulli", "Dropout"}, ops
    inputs = cheerla.inputs(64)
    fused = cheerla.model.components["fused"]
    with torch.no_grad():
        values = cheerla.model.node_values(inputs)
        args = {str(i): values[n] for i, n in enumerate(("clinical_net", "mirna_net", "gene_net"))}
        args |= {f"present{i}": {"present": inputs[f"{m}_present"]} for i, m in enumerate(("clinical", "mirna",
                                                                                             "gene"))}
        fused.train()
        torch.manual_seed(0)
        dropped = fused(args)["fused"]
        fused.eval()
        kept = fused(args)["fused"]
    torch.testing.assert_close(kept, values["fused"]["fused"])
    differs = (dropped - kept).abs().amax(1) > 1e-6  # B: some modality was hidden
    assert 0.2 < differs.float().mean() < 0.95, differs.float().mean()


def test_wide_encoder_is_a_linear_model_over_one_hot_columns_and_crosses():
    loaded = load_spec(SPECS / "wide_deep.yaml", "tiny")
    model = build(loaded).eval()
    inputs = make_inputs(loaded.plan, {"batch": 12}, seed=3)
    with torch.no_grad():
        got = model.node_values(inputs)["wide"]["logits"]  # B,1
    wide = model.components["wide"]
    ids, dense = inputs["categorical"], inputs["dense"]  # B,2 / B,2
    one_hot = torch.cat([F.one_hot(ids[:, 0], 4), F.one_hot(ids[:, 1], 3),
                         F.one_hot(ids[:, 0] * 3 + ids[:, 1], 12)], dim=1).float()  # B,4+3+12
    expected = one_hot @ wide.weight.weight + dense @ wide.numeric.weight.T  # B,1 (no bias in the spec)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_similarity_loss_equals_the_pairwise_margin_sum():
    from mmspec.components.objectives.similarity.loss import ModalitySimilarity

    g = torch.Generator().manual_seed(0)
    e = [torch.randn(5, 4, generator=g) for _ in range(3)]
    present = [torch.tensor([1, 1, 0, 1, 1]), torch.ones(5, dtype=torch.int64), torch.tensor([1, 0, 1, 1, 0])]
    loss = ModalitySimilarity(3, [0, 2], 0.3)(
        {"0": {"e": e[0]}, "1": {"e": e[1]}, "2": {"e": e[2]}, "present0": {"p": present[0]},
         "present2": {"p": present[2]}}, {})
    terms = []
    for m, n in itertools.permutations(range(3), 2):
        for a, b in itertools.product(range(5), repeat=2):
            if a != b and present[m][a] and present[n][a] and present[n][b]:
                terms.append(max(0.0, 0.3 - F.cosine_similarity(e[m][a], e[n][a], 0).item()
                                 + F.cosine_similarity(e[m][a], e[n][b], 0).item()))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_pointnet_risk_ignores_the_order_of_the_points():
    loaded = load_spec(SPECS / "polsterl.yaml", "tiny")
    model = build(loaded).eval()
    inputs = make_inputs(loaded.plan, {"batch": 4, "points": 9}, seed=0)
    shuffled = {**inputs, "shape": inputs["shape"][:, torch.randperm(9)]}
    with torch.no_grad():
        torch.testing.assert_close(model(inputs)[0], model(shuffled)[0], atol=1e-6, rtol=1e-5)


def test_tiny_polsterl_equals_the_wide_pointnet_of_the_first_author():
    """Same weights and BatchNorm statistics, same log-risk as WidePointNetClassifier's layers (eval mode): the
    per-point Linear layers as kernel-1 Conv1d, the max over points, and wide + deep = one Linear on the
    concatenation [deep features, tabular features]."""
    loaded = load_spec(SPECS / "polsterl.yaml", "tiny")
    model = build(loaded).eval()
    reference = PL.WidePointNet(features=4, glob=16, deep=6, point=(8, 8)).eval()
    c = model.components
    ours = [*c["point_features"].mlp, c["point_features"].out_norm, *c["deep_features"].mlp,
            c["deep_features"].out_norm]
    ours = [m for m in ours if isinstance(m, torch.nn.Linear | torch.nn.BatchNorm1d)]
    theirs = [m for m in [*reference.point, *reference.fc] if not isinstance(m, torch.nn.ReLU)]
    assert len(ours) == len(theirs) == 12
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            for name, x in [*a.named_parameters(), *a.named_buffers()]:
                if x.is_floating_point():
                    x.copy_(torch.rand(x.shape, generator=g) + 0.5 if "var" in name else torch.randn(x.shape,
                                                                                                      generator=g))
                getattr(b, name).copy_(x.view_as(getattr(b, name)))
        for risk in ("wide_risk", "deep_risk"):
            c[risk].mlp[0].weight.normal_(generator=g)
        c["deep_risk"].mlp[0].bias.normal_(generator=g)
        reference.out.weight.copy_(torch.cat([c["deep_risk"].mlp[0].weight, c["wide_risk"].mlp[0].weight], 1))
        reference.out.bias.copy_(c["deep_risk"].mlp[0].bias)
        inputs = make_inputs(loaded.plan, {"batch": 5, "points": 11}, seed=2)
        torch.testing.assert_close(model(inputs)[0], reference(inputs["shape"], inputs["clinical"]), atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("stem", ["multisurv", "cheerla", "wide_deep", "polsterl"])
def test_fit_lowers_the_loss_of_the_tiny_variant(stem):
    loaded = load_spec(SPECS / f"{stem}.yaml", "tiny")
    losses = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 16, seed=0), 25, seed=0).losses
    assert losses[-1] < 0.8 * losses[0], losses[::8]


MISUSE = [
    ("multisurv", "fusion.fused.present", "[null, mrna.present]", "present has 2 entries for 5 inputs"),
    ("multisurv", "fusion.fused.present", "[null, mrna.values, mirna.present, dnam.present, cnv.present]",
     "a presence flag is int64 [batch]"),
    ("multisurv", "heads.mrna_net.input", "mrna", "reference one of them, e.g. 'mrna.values'"),
    ("multisurv", "modalities.cnv.columns", "null", "`columns` is missing"),
    ("multisurv", "encoders.clinical_features.embed_dims", "[1, 2]", "embed_dims has 2 widths"),
    ("wide_deep", "encoders.wide.crosses", "[[0, 5]]", "column 5 does not exist"),
    ("wide_deep", "encoders.wide.crosses", "[[1, 1]]", "repeats a column"),
    ("cheerla", "objectives.similarity.present", "[clinical.present]", "present has 1 entries for 3 inputs"),
]


@pytest.mark.parametrize(("stem", "key", "value", "message"), MISUSE, ids=[m[3][:24] for m in MISUSE])
def test_misuse_is_a_located_error(stem, key, value, message):
    with pytest.raises(SpecError) as err:
        load_spec(SPECS / f"{stem}.yaml", "tiny", sets=[f"{key}={value}"])
    assert message in str(err.value)
    assert re.match(rf"(--set #1|\S+/{stem}\.yaml):\d+:\d+: error\[", str(err.value)), str(err.value)
