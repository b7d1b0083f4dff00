"""Survival models SU-01 ... SU-05 (specs/cox.yaml, deepsurv.yaml, deepconvsurv.yaml, deepcorrsurv.yaml,
concatae.yaml): the Cox fit and partial likelihood against lifelines, parameter counts against the reference
networks, the patch CNN against the authors' layers, the correlation loss against numpy, and `mmspec fit` on
every tiny variant and training stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from deepcorrsurv_references import DeepCorrSurv
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from safetensors.torch import load_file
from survival_references import ROSSI_DURATION, ROSSI_EVENT, deepconvsurv_official, deepsurv_official, rossi_cox

from mmspec.api import build, capture, load_spec, param_counts
from mmspec.cli import run

SPECS = Path(__file__).resolve().parents[2] / "specs"
COX, DEEPSURV, DEEPCONVSURV = SPECS / "cox.yaml", SPECS / "deepsurv.yaml", SPECS / "deepconvsurv.yaml"
DEEPCORRSURV, CONCATAE = SPECS / "deepcorrsurv.yaml", SPECS / "concatae.yaml"


def _total(path: Path, variant: str | None = None) -> int:
    return param_counts(build(load_spec(path, variant), device="meta"))["total"]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _censored(n: int, beta: np.ndarray, seed: int, tied: bool) -> pd.DataFrame:
    """Exponential event times with log-hazard x.beta, uniform censoring; integer times when `tied`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, beta.size))
    event_time = rng.exponential(1.0 / np.exp(x @ beta))
    censor_time = rng.uniform(0.0, 2.0, n)
    time = np.minimum(event_time, censor_time)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(beta.size)])
    frame["time"] = np.ceil(time * 10) if tied else time
    frame["event"] = (event_time <= censor_time).astype(int)
    return frame


def _partial_likelihood(path: Path, variant: str | None, ties: str):
    """The spec's model in float64 and a function (x, time, event) -> mean negative log partial likelihood per
    event, computed by the spec's own risk head and `cox_partial_likelihood` module."""
    loaded = load_spec(path, variant, [f"objectives.partial_likelihood.ties={ties}"])
    model = build(loaded).double()

    def loss(x: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
        risk = model.node_values({"covariates": x})["risk"]  # B,1
        return model.objectives["partial_likelihood"]({"input": risk}, {"time": time, "event": event})

    return model, loss


def _tensors(frame: pd.DataFrame, covariates: list[str], duration: str, event: str):
    return (torch.tensor(frame[covariates].to_numpy(), dtype=torch.float64),
            torch.tensor(frame[duration].to_numpy(), dtype=torch.float64),
            torch.tensor(frame[event].to_numpy(), dtype=torch.int64))


def _fit_coefficients(path: Path, variant: str | None, frame: pd.DataFrame, covariates: list[str], duration: str,
                      event: str) -> np.ndarray:
    """Minimise the spec's Efron partial likelihood over the whole data set (one batch) with L-BFGS."""
    model, loss = _partial_likelihood(path, variant, "efron")
    x, time, ev = _tensors(frame, covariates, duration, event)
    weight = model.components["risk"].mlp[0].weight  # 1,D: beta
    with torch.no_grad():
        weight.zero_()
    opt = torch.optim.LBFGS([weight], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(x, time, ev)
        value.backward()
        return value

    opt.step(closure)
    return weight.detach().numpy()[0]


def test_cox_fit_equals_lifelines_on_rossi():
    """The canonical spec (7 covariates) fitted on load_rossi gives lifelines' coefficients within 1e-4."""
    reference = rossi_cox()
    covariates = list(reference.params_.index)
    beta = _fit_coefficients(COX, None, load_rossi(), covariates, ROSSI_DURATION, ROSSI_EVENT)
    np.testing.assert_allclose(beta, reference.params_.to_numpy(), atol=1e-4, rtol=0)


def test_cox_fit_equals_lifelines_on_synthetic_tied_data():
    frame = _censored(300, np.array([0.8, -0.5, 0.3]), seed=1, tied=True)
    assert frame.duplicated("time").sum() > 50 and 0.2 < frame["event"].mean() < 0.9  # ties and censoring
    covariates = ["x0", "x1", "x2"]
    reference = CoxPHFitter(penalizer=0.0).fit(frame, "time", "event")
    beta = _fit_coefficients(COX, "tiny", frame, covariates, "time", "event")
    np.testing.assert_allclose(beta, reference.params_.to_numpy(), atol=1e-4, rtol=0)


def _loss_at(beta: np.ndarray, frame: pd.DataFrame, covariates: list[str], duration: str, event: str, ties: str,
             variant: str | None) -> float:
    """Negative log partial likelihood (summed over events) of the spec at coefficients `beta`."""
    model, loss = _partial_likelihood(COX, variant, ties)
    x, time, ev = _tensors(frame, covariates, duration, event)
    with torch.no_grad():
        model.components["risk"].mlp[0].weight.copy_(torch.tensor(beta)[None])
        return float(loss(x, time, ev)) * int(ev.sum())


def test_partial_likelihood_at_lifelines_beta_equals_its_log_likelihood_efron():
    reference = rossi_cox()
    covariates = list(reference.params_.index)
    ours = _loss_at(reference.params_.to_numpy(), load_rossi(), covariates, ROSSI_DURATION, ROSSI_EVENT, "efron",
                    None)
    assert ours == pytest.approx(-reference.log_likelihood_, abs=1e-6)
    breslow = _loss_at(reference.params_.to_numpy(), load_rossi(), covariates, ROSSI_DURATION, ROSSI_EVENT,
                       "breslow", None)
    assert abs(breslow - ours) > 1e-2  # rossi's tied weeks: the two tie rules really differ here


def test_partial_likelihood_breslow_equals_lifelines_without_ties():
    """Without tied times Breslow's and Efron's likelihoods coincide; lifelines computes Efron's."""
    frame = _censored(200, np.array([0.5, -1.0, 0.2]), seed=2, tied=False)
    assert not frame.duplicated("time").any()
    covariates = ["x0", "x1", "x2"]
    reference = CoxPHFitter(penalizer=0.0).fit(frame, "time", "event")
    ours = _loss_at(reference.params_.to_numpy(), frame, covariates, "time", "event", "breslow", "tiny")
    assert ours == pytest.approx(-reference.log_likelihood_, abs=1e-6)


def test_parameter_counts_equal_the_references():
    assert _total(COX) == len(rossi_cox().params_) == 7
    with torch.device("meta"):
        deepsurv = deepsurv_official(5, [48, 48])
        deepconvsurv = deepconvsurv_official(3, 512, 512)
    assert _total(DEEPSURV) == _count(deepsurv)
    assert _total(DEEPCONVSURV) == _count(deepconvsurv)
    with torch.device("meta"):
        deepcorrsurv = DeepCorrSurv(3, 512, 512, 5)
    assert _total(DEEPCORRSURV) == _total(DEEPCORRSURV, "pretrain") == _count(deepcorrsurv) == 129_841


def test_tiny_deepconvsurv_equals_the_authors_layers():
    """Same weights, same log-risk: conv/pool sizes (floor), flatten order and the dense layers match WSISA's."""
    loaded = load_spec(DEEPCONVSURV, "tiny")
    model = build(loaded).eval()
    reference = deepconvsurv_official(3, 96, 96, filters=4, dense=8).eval()
    ours = list(model.components["cnn"].parameters()) + list(model.components["risk"].parameters())
    theirs = list(reference.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    with torch.no_grad():
        for a, b in zip(theirs, ours, strict=True):
            a.copy_(b)
        x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(model({"patch": x})[0], reference(x), atol=1e-6, rtol=1e-5)


def test_tiny_deepcorrsurv_equals_the_authors_layers():
    """Same weights, same log-risk as the authors' two views and common sub-network: the linear 32-d (here 6-d)
    view outputs, the concatenation order [image, molecular] and the linear 8-d (here 4-d) layer before the risk."""
    loaded = load_spec(DEEPCORRSURV, "tiny")
    model = build(loaded).eval()
    reference = DeepCorrSurv(3, 96, 96, 12, filters=4, view=6, hidden=8, common=(6, 4)).eval()
    c = model.components
    ours = [*c["image_net"].parameters(), *c["molecular_net"].parameters(), *c["common_net"].parameters(),
            *c["risk"].parameters()]
    theirs = list(reference.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    with torch.no_grad():
        for a, b in zip(theirs, ours, strict=True):
            a.copy_(b)
        g = torch.Generator().manual_seed(0)
        x, v = torch.randn(3, 3, 96, 96, generator=g), torch.randn(3, 12, generator=g)
        torch.testing.assert_close(model({"patch": x, "molecular": v})[0], reference(x, v), atol=1e-6, rtol=1e-5)


def test_correlation_loss_is_minus_the_summed_pearson_correlations():
    model = build(load_spec(DEEPCORRSURV, "tiny_pretrain"))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 6, generator=g)  # B,D
    b = 0.5 * a + torch.randn(16, 6, generator=g)  # B,D, correlated with a
    with torch.no_grad():
        loss = model.objectives["correlation"]({"input": {"pooled": a}, "target": {"embedding": b}}, {})
    corr = np.corrcoef(a.double().numpy().T, b.double().numpy().T)[:6, 6:]  # D,D: a's columns against b's
    assert float(loss) == pytest.approx(-np.trace(corr), abs=1e-5)


@pytest.mark.parametrize(("path", "variant"), [(COX, "tiny"), (DEEPSURV, "tiny"), (DEEPCONVSURV, "tiny")])
def test_mmspec_fit_lowers_the_cox_loss(path, variant, tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(path), "--variant", variant, "--steps", "15", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert list(history["objectives"]) == ["partial_likelihood"]
    assert history["losses"][-1] < history["losses"][0], history["losses"][::10]


def _fit(path: Path, variant: str, out: Path, steps: int, weights: Path | None = None) -> dict:
    """`mmspec fit` with a checkpoint in `out`; returns the --json history."""
    out.mkdir()
    args = ["fit", str(path), "--variant", variant, "--steps", str(steps), "--batch", "16", "--lr", "1e-2",
            "--out", str(out), "--json", str(out / "fit.json"), "-q"]
    assert run([*args, *(["--weights", str(weights)] if weights else [])]) == 0
    return json.loads((out / "fit.json").read_text())


def _checkpoint(out: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a fit checkpoint by node (its optimizer state left out)."""
    (file,) = out.glob("*.safetensors")
    return {k.removeprefix("components."): v for k, v in load_file(str(file)).items() if k.startswith("components.")}


def _two_stages(path: Path, first: str, second: str, tmp: Path, steps: int = 40):
    """Stage 1 from scratch, then stage 2 from stage 1's checkpoint (`fit --weights`): both histories and
    both checkpoints."""
    history1 = _fit(path, first, tmp / "stage1", steps)
    history2 = _fit(path, second, tmp / "stage2", steps, weights=tmp / "stage1")
    return history1, history2, _checkpoint(tmp / "stage1"), _checkpoint(tmp / "stage2")


def test_deepcorrsurv_pretrains_on_correlation_then_fine_tunes_on_cox(tmp_path):
    history1, history2, before, after = _two_stages(DEEPCORRSURV, "tiny_pretrain", "tiny", tmp_path, steps=15)
    assert list(history1["objectives"]) == ["correlation"] and list(history2["objectives"]) == ["partial_likelihood"]
    assert history1["losses"][-1] < history1["losses"][0] - 1.0  # 6 correlations rise by more than 1 in total
    assert history2["losses"][-1] < history2["losses"][0]
    assert sorted(before) == sorted(after)
    for name, value in before.items():  # stage 2 moves only the common sub-network, as DeepMultiSurv.py does
        assert torch.equal(value, after[name]) == name.startswith(("image_net.", "molecular_net.")), name


@pytest.mark.parametrize(("first", "second"), [("tiny", "tiny_survival"), ("tiny_crossae", "tiny_crossae_survival")])
def test_concatae_autoencoders_then_a_cox_model_on_frozen_codes(first, second, tmp_path):
    history1, history2, before, after = _two_stages(CONCATAE, first, second, tmp_path)
    assert sorted(history1["objectives"]) == ["recon_methylation", "recon_mirna"]
    assert list(history2["objectives"]) == ["partial_likelihood"]
    assert history1["losses"][-1] < 0.75 * history1["losses"][0]
    assert history2["losses"][-1] < history2["losses"][0]
    assert sorted(before) == sorted(after)
    for name, value in before.items():  # stage 2 moves only the Cox head
        assert torch.equal(value, after[name]) == (not name.startswith("risk.")), name


@pytest.mark.parametrize("variant", ["tiny", "tiny_crossae"])
def test_concatae_decoders_are_training_only(variant):
    loaded = load_spec(CONCATAE, variant)
    assert [name for name, _, _ in loaded.plan.outputs] == ["risk"]
    graph = capture(build(loaded)).graph
    targets = {str(n.target) for n in graph.nodes if n.op == "call_module"}
    assert any(t.startswith("components.enc_") for t in targets)
    assert not any(t.startswith("components.dec_") for t in targets)


def test_crossae_decoders_read_the_other_modality():
    plan = load_spec(CONCATAE, "crossae").plan
    assert plan.bundles["dec_methylation"]["embedding"].shape[-1] == 1000
    spec = load_spec(CONCATAE, "crossae").spec
    assert (spec.heads["dec_methylation"].input, spec.heads["dec_mirna"].input) == ("enc_mirna", "enc_methylation")
    assert spec.fusion["codes"].type == "elementwise" and spec.fusion["codes"].op == "mean"


def test_stage_variants_share_node_names():
    """The stage-1 checkpoint loads into stage 2 unchanged: same parameter names and shapes."""
    for path, pairs in ((DEEPCORRSURV, [(None, "pretrain")]), (CONCATAE, [(None, "survival"),
                                                                          ("crossae", "crossae_survival")])):
        for a, b in pairs:
            first, second = build(load_spec(path, a), device="meta"), build(load_spec(path, b), device="meta")
            assert {k: v.shape for k, v in first.state_dict().items()} == {
                k: v.shape for k, v in second.state_dict().items()}

