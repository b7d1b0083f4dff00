"""Structured + unstructured data (SU-10 ... SU-16): parameter counts against the papers' layer tables
(tests/structured_references.py), the located shape rules of the new components, `fit` lowering the loss of each
tiny spec, and the statistical stages (piecewise-exponential expansion, orthogonalization, GP posterior)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import structured_references as R
import torch

from mmspec.api import build, load_spec, param_counts
from mmspec.errors import SpecError
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _count(stem: str, variant: str | None = None) -> int:
    return param_counts(build(load_spec(SPECS / f"{stem}.yaml", variant), device="meta"))["total"]


def _reference(module) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in module().parameters())


def _fit(stem: str, steps: int = 30, lr: float = 1e-2) -> list[float]:
    loaded = load_spec(SPECS / f"{stem}.yaml", "tiny")
    trainer = Trainer(loaded, lr=lr)
    batch = synthetic_batch(loaded, 8, seed=0)
    return trainer.fit(batch, steps, seed=0).losses


def test_sirko_unet_matches_the_paper_layers():
    assert _count("sirko_buildings") == _reference(lambda: R.unet(3, [64, 128, 256, 512, 1024], 1))


def test_sirko_fit_lowers_the_pixel_loss():
    losses = _fit("sirko_buildings")
    assert losses[-1] < 0.8 * losses[0], losses[::5]


def test_unet_rejects_sizes_that_do_not_halve(tmp_path):
    text = (SPECS / "sirko_buildings.yaml").read_text().replace("height: 16", "height: 18")
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        build(load_spec(path, "tiny"), device="meta")
    line = text.splitlines().index("    encoders.unet.widths: [4, 8, 8]") + 1  # located at the widths in force
    assert "must divide by 4" in str(err.value) and f"odd.yaml:{line}:" in str(err.value)


def test_ssddr_matches_resnet18_and_its_coefficient_blocks():
    assert _count("ssddr") == _reference(R.ssddr)


def test_ssddr_fit_lowers_the_penalised_nll():
    losses = _fit("ssddr")
    assert losses[-1] < losses[0] - 0.5, losses[::5]


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_spline_basis_equals_scipy(degree):
    from scipy.interpolate import BSpline

    from mmspec.components.encoders.spline.module import BSplineBasis

    lo, hi, knots = -2.0, 3.0, 6
    x = torch.linspace(lo, hi, 41, dtype=torch.float64)
    basis = BSplineBasis(None, degree, knots, (lo, hi)).double()({"input": {"values": x}})["basis"]  # B,K
    step = (hi - lo) / (knots - 1)
    t = lo + step * torch.arange(-degree, knots + degree, dtype=torch.float64)  # knots extended on both sides
    inner = x[1:-1]  # scipy's design matrix needs the points strictly inside the base interval's ends here
    expected = BSpline.design_matrix(inner.numpy(), t.numpy(), degree).toarray()
    # the knots are float32 buffers: their rounding bounds the difference
    torch.testing.assert_close(basis[1:-1], torch.from_numpy(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(basis.sum(1), torch.ones_like(x), atol=1e-6, rtol=0)  # partition of unity


def test_difference_penalty_is_the_p_spline_quadratic_form():
    from mmspec.components.heads.distributional.module import DistributionalHead

    head = DistributionalHead([("rate", "exp", [("rate_0", 7, {"kind": "difference", "order": 2, "strength": 0.3})]),
                               ])
    w = head.coef["rate_0"].weight.detach()[0].double().numpy()
    d = np.diff(np.eye(7), n=2, axis=0)  # 5 x 7 second differences
    assert head.penalty().item() == pytest.approx(0.3 * w @ d.T @ d @ w, rel=1e-6)


def test_orthogonalization_projects_in_training_and_exports_the_running_coefficients():
    from mmspec.components.fusion.orthogonalize.module import Orthogonalize

    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(64, 3, generator=g), torch.randn(64, 5, generator=g)
    cell = Orthogonalize(4, 5, 1, momentum=1.0, eps=1e-9).double()
    inputs = {"input": {"u": u.double()}, "x0": {"x": x.double()}}
    latent = cell(inputs)["latent"]  # B,q
    design = np.concatenate([np.ones((64, 1)), x.double().numpy()], 1)
    residual = u.double().numpy() - design @ np.linalg.lstsq(design, u.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(latent.detach().numpy(), residual, atol=1e-8)
    np.testing.assert_allclose(design.T @ latent.detach().numpy(), 0, atol=1e-8)  # orthogonal to span([1, X])
    cell.eval()  # momentum 1: the running statistics are this batch's, so evaluation reproduces the projection
    np.testing.assert_allclose(cell(inputs)["latent"].detach().numpy(), residual, atol=1e-6)


def _survival_data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 4.95, n), rng.integers(0, 2, n)


def test_piecewise_exponential_rows_equal_lifelines_episodes():
    import pandas as pd
    from lifelines.utils import to_episodic_format

    from mmspec.components.objectives.distributional.ped import piecewise_exponential

    time, event = _survival_data()
    rows = piecewise_exponential(time, event, np.arange(6.0))
    df = pd.DataFrame({"id": np.arange(len(time)), "t": time, "e": event})
    long = to_episodic_format(df, "t", "e", id_col="id", time_gaps=1.0).sort_values(["id", "start"])
    np.testing.assert_array_equal(rows["subject"], long["id"].to_numpy())
    np.testing.assert_allclose(rows["start"], long["start"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(rows["start"] + rows["exposure"], long["stop"].to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(rows["event"], long["e"].to_numpy())


def test_poisson_nll_with_exposure_offset_is_the_piecewise_exponential_likelihood():
    from mmspec.components.heads.distributional.module import DistributionalHead
    from mmspec.components.objectives.distributional.loss import DistributionNLL
    from mmspec.components.objectives.distributional.ped import piecewise_exponential

    time, event = _survival_data(seed=1)
    cuts = np.array([0.0, 0.7, 1.5, 2.2, 3.6, 5.0])
    hazard = np.array([0.3, 0.8, 0.5, 1.2, 0.6])
    rows = piecewise_exponential(time, event, cuts)
    cumulative = np.concatenate([[0.0], np.cumsum(hazard * np.diff(cuts))])  # H at the cuts
    j = np.searchsorted(cuts, time) - 1
    survival_loglik = np.sum(event * np.log(hazard[j]) - (cumulative[j] + hazard[j] * (time - cuts[j])))
    free_of_hazard = np.sum(rows["event"] * np.log(rows["exposure"]))  # the offset's constant
    loss = DistributionNLL("poisson", True, DistributionalHead([("rate", "exp", [])]))
    args = {"input": {"rate": torch.from_numpy(hazard[rows["interval"]])}}
    targets = {"y": torch.from_numpy(rows["event"]), "exposure": torch.from_numpy(rows["exposure"])}
    nll = loss(args, targets).item() * len(rows["event"])
    assert -nll == pytest.approx(survival_loglik + free_of_hazard, rel=1e-10)


def test_deeppamm_matches_resnet18_and_its_coefficient_blocks():
    assert _count("deeppamm") == _reference(R.deeppamm)


def test_deeppamm_fit_lowers_the_poisson_loss():
    losses = _fit("deeppamm")
    assert losses[-1] < 0.7 * losses[0], losses[::5]


def test_random_effect_groups_must_match_the_ids(tmp_path):
    text = (SPECS / "deeppamm.yaml").read_text().replace("encoders.b_cluster.groups: 4", "encoders.b_cluster.groups: 5")
    path = tmp_path / "groups.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path, "tiny")
    line = text.splitlines().index("    encoders.b_cluster.groups: 5") + 1
    assert "holds ids below 4, but groups is 5" in str(err.value) and f"groups.yaml:{line}:" in str(err.value)


def test_you_cropyield_matches_the_official_lstm_sizes():
    assert _count("you_cropyield") == _reference(R.you_lstm)


def test_you_cropyield_fit_lowers_the_marginal_likelihood_loss():
    losses = _fit("you_cropyield")
    assert losses[-1] < losses[0] - 0.3, losses[::5]


def _gp_posterior_numpy(h, g, t, y, hs, gs, ts, w, b, sigma, lg, lt, noise, v):
    """The posterior mean of You et al.'s GP with a linear mean (Rasmussen & Williams eq. 2.42), in numpy."""

    def k(g1, t1, g2, t2):
        d = ((g1[:, None] - g2[None]) ** 2).sum(-1) / lg**2 + (t1[:, None] - t2[None]) ** 2 / lt**2
        return sigma * np.exp(-d)

    big_h, big_hs = np.c_[h, np.ones(len(h))], np.c_[hs, np.ones(len(hs))]
    k_inv = np.linalg.inv(k(g, t, g, t) + noise * np.eye(len(t)))
    prior = np.r_[w, b]
    beta = np.linalg.solve(np.eye(len(prior)) / v + big_h.T @ k_inv @ big_h, big_h.T @ k_inv @ y + prior / v)
    return big_hs @ beta + k(gs, ts, g, t) @ k_inv @ (y - big_h @ beta)


def test_gp_condition_gives_the_posterior_mean_in_eager_and_on_onnx_runtime(tmp_path):
    import onnxruntime as ort

    from mmspec.api import capture, export

    loaded = load_spec(SPECS / "you_cropyield.yaml", "tiny")
    model = build(loaded).eval()
    head = model.components["gp"]
    g = torch.Generator().manual_seed(3)
    train = {"h": torch.randn(6, 4, generator=g), "g": torch.rand(6, 2, generator=g), "t": torch.rand(6, generator=g),
             "y": torch.randn(6, generator=g)}
    head.condition(train["h"], train["g"], train["t"], train["y"])
    feed = {"histograms": torch.randn(3, 5, 6, generator=g), "location": torch.rand(3, 2, generator=g),
            "year": torch.rand(3, generator=g)}
    with torch.no_grad():
        mean, prediction = model(feed)
        features = model.components["features"]({"input": {"pooled": model.components["last"]({"input": {
            "h": model.components["lstm"]({"input": {"values": feed["histograms"]}})["h"]}})["pooled"]}})["embedding"]
    expected = _gp_posterior_numpy(*(train[k].double().numpy() for k in "hgty"), features.double().numpy(),
                                   feed["location"].double().numpy(), feed["year"].double().numpy(),
                                   head.linear.weight[0].detach().double().numpy(), head.linear.bias.item(),
                                   1.0, 0.5, 1.5, 0.1, 0.01)
    np.testing.assert_allclose(prediction.numpy(), expected, atol=1e-5)
    assert not np.allclose(prediction.numpy(), mean.numpy(), atol=1e-3)  # the conditioning moved the prediction
    path = tmp_path / "gp.onnx"
    export(capture(model), loaded, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_mean, onnx_prediction = session.run(None, {k: v.numpy() for k, v in feed.items()})
    np.testing.assert_allclose(onnx_prediction, prediction.numpy(), atol=1e-5)
    np.testing.assert_allclose(onnx_mean, mean.numpy(), atol=1e-5)


def test_jean_matches_the_vggf_layer_table():
    assert _count("jean_poverty") == _reference(R.jean)


def test_jean_fit_lowers_the_night_light_loss():
    losses = _fit("jean_poverty")
    assert losses[-1] < 0.5 * losses[0], losses[::5]


def test_ridge_stage_aggregates_per_cluster_and_solves_the_penalised_least_squares():
    import pandas as pd

    from mmspec.components.heads.distributional.regression import aggregate, fit_ridge

    rng = np.random.default_rng(4)
    features, clusters = rng.normal(size=(60, 5)), rng.integers(0, 12, 60)
    ids, means = aggregate(features, clusters)
    expected = pd.DataFrame(features).groupby(clusters).mean()
    np.testing.assert_array_equal(ids, expected.index.to_numpy())
    np.testing.assert_allclose(means, expected.to_numpy(), atol=1e-12)
    y = means @ rng.normal(size=5) + rng.normal(size=len(ids))
    w, b = fit_ridge(means, y, 2.0)
    # the same minimiser as least squares on the augmented system [X 1; sqrt(2) I 0] [w; b] = [y; 0]
    augmented = np.block([[means, np.ones((len(ids), 1))], [np.sqrt(2.0) * np.eye(5), np.zeros((5, 1))]])
    solution = np.linalg.lstsq(augmented, np.r_[y, np.zeros(5)], rcond=None)[0]
    np.testing.assert_allclose(np.r_[w, b], solution, atol=1e-10)


def test_jean_cluster_prediction_is_the_mean_of_its_tiles_after_set_linear_term():
    from mmspec.components.heads.distributional.regression import aggregate, fit_ridge, set_linear_term

    loaded = load_spec(SPECS / "jean_poverty.yaml", "tiny")
    model = build(loaded).eval()
    g = torch.Generator().manual_seed(5)
    tiles, clusters = torch.randn(12, 3, 16, 16, generator=g), np.repeat(np.arange(4), 3)
    with torch.no_grad():
        _, _, features = model({"tile": tiles})
    ids, means = aggregate(features.numpy(), clusters)
    w, b = fit_ridge(means, np.arange(4.0), 0.5)
    set_linear_term(model.components["consumption"], "loc", 0, w, b)
    with torch.no_grad():
        _, loc, _ = model({"tile": tiles})
    np.testing.assert_allclose(aggregate(loc.numpy()[:, None], clusters)[1][:, 0], means @ w + b, atol=1e-4)


def test_gebru_matches_the_alexnet_layer_table():
    assert _count("gebru_streetview") == _reference(lambda: R.alexnet_dense(2657))


def test_gebru_fit_lowers_the_car_class_loss():
    losses = _fit("gebru_streetview")
    assert losses[-1] < 0.5 * losses[0], losses[::5]


def test_law_matches_two_vgg16_trunks_and_the_hedonic_head():
    assert _count("law_house") == _reference(R.law)


def test_law_fit_lowers_the_price_nll():
    losses = _fit("law_house")
    assert losses[-1] < losses[0] - 0.5, losses[::5]


def test_orthogonalized_image_terms_keep_the_hedonic_coefficients():
    """Law et al.'s two stages in one model: with the deep term projected off [1, X], least squares on [1, X, D]
    gives the attributes the coefficients of the attributes-only regression."""
    from mmspec.components.fusion.orthogonalize.module import Orthogonalize

    g = torch.Generator().manual_seed(6)
    x, deep = torch.randn(80, 3, generator=g, dtype=torch.float64), torch.randn(80, 4, generator=g, dtype=torch.float64)
    y = (x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + deep[:, 0] + x[:, 1] * deep[:, 1]).numpy()
    cell = Orthogonalize(4, 4, 1, momentum=0.1, eps=1e-12).double()
    latent = cell({"input": {"u": deep}, "x0": {"x": x}})["latent"].detach().numpy()
    ones = np.ones((80, 1))
    hedonic = np.linalg.lstsq(np.c_[ones, x.numpy()], y, rcond=None)[0]
    joint = np.linalg.lstsq(np.c_[ones, x.numpy(), latent], y, rcond=None)[0]
    raw = np.linalg.lstsq(np.c_[ones, x.numpy(), deep.numpy()], y, rcond=None)[0]
    np.testing.assert_allclose(joint[:4], hedonic, atol=1e-8)
    assert not np.allclose(raw[:4], hedonic, atol=1e-2)  # without the cell the deep term shifts them


@pytest.mark.parametrize(("old", "new", "message", "at"), [
    ("      scale: {terms: [x], link: softplus}", "      rate: {terms: [x]}",
     "a normal distribution has the parameters ['loc', 'scale']; got ['loc', 'rate']", "    parameters:"),
    ("  deep: {type: orthogonalize, input: cnn.pooled,", "  deep: {type: orthogonalize, input: cnn.features,",
     "the latent must be [batch, q]; 'cnn.features' is", "  deep:"),
])
def test_structured_shape_rules_are_located(tmp_path, old, new, message, at):
    text = (SPECS / "ssddr.yaml").read_text()
    assert old in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(SpecError) as err:
        load_spec(path, "tiny")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith(at))  # the field at fault
    assert message in str(err.value) and f"bad.yaml:{line}:" in str(err.value), str(err.value)
