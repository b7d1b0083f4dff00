"""Fit the tiny MultiSurv spec on synthetic censored survival data in which some patients lack a modality, export
it to ONNX, verify the file against eager PyTorch and print the concordance index of the ONNX model's
predictions on held-out patients.

    python examples/survival.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from lifelines.utils import concordance_index

import mmspec
from mmspec.components.objectives.runtime import Batch
from mmspec.graph.inputs import make_inputs
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[1] / "specs" / "multisurv.yaml"
PATIENTS, HELD_OUT, STEPS = 200, 100, 40


def cohort(loaded, n: int, seed: int) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """Random modalities whose mRNA (when measured) and clinical columns drive an exponential event time;
    uniform censoring; a third of the patients have no mRNA and a quarter no DNA methylation."""
    g = torch.Generator().manual_seed(seed)
    inputs = make_inputs(loaded.plan, {"batch": n}, seed=seed)
    inputs["mrna_present"] = (torch.rand(n, generator=g) > 1 / 3).long()
    inputs["dnam_present"] = (torch.rand(n, generator=g) > 1 / 4).long()
    signal = inputs["mrna"][:, :3].sum(1) * inputs["mrna_present"] + 0.8 * (inputs["clinical"][:, 0] - 2)  # n
    inputs["mrna"] = inputs["mrna"] * inputs["mrna_present"][:, None]  # unmeasured: zeros (ignored by the model)
    event_time = torch.empty(n).exponential_(generator=g) / signal.exp()  # n
    censor_time = 3 * torch.rand(n, generator=g)  # n
    return inputs, torch.minimum(event_time, censor_time).numpy(), (event_time <= censor_time).long().numpy()


def main() -> None:
    loaded = mmspec.load_spec(SPEC, variant="tiny")
    intervals = loaded.spec.heads["hazard"].num_classes
    train, time, event = cohort(loaded, PATIENTS, seed=0)
    cuts = np.quantile(time, np.linspace(0, 1, intervals + 1)[1:-1])  # equal-count follow-up intervals
    interval = torch.from_numpy(np.searchsorted(cuts, time)).long()  # B
    batch = Batch(train, {"survival": {"interval": interval, "event": torch.from_numpy(event)}})
    trainer = Trainer(loaded, lr=1e-2)
    history = trainer.fit(batch, STEPS, seed=0)
    print(f"discrete-time NLL {history.losses[0]:.3f} -> {history.losses[-1]:.3f} in {STEPS} steps; "
          f"{int((1 - train['mrna_present']).sum())} of {PATIENTS} patients without mRNA")
    assert history.losses[-1] < history.losses[0]

    model = trainer.model.eval()
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "multisurv-tiny.onnx"
        gm, _ = mmspec.optimize(mmspec.capture(model))
        mmspec.export(gm, loaded, path)
        result = mmspec.verify(path, model, loaded)
        print(f"verified: {result['passed']} on {len(result['cases'])} runs")
        assert result["passed"]

        test, test_time, test_event = cohort(loaded, HELD_OUT, seed=1)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {k: v.numpy() for k, v in test.items()})  # B,K hazard logits
    survival = np.cumprod(1 - 1 / (1 + np.exp(-logits)), axis=1)  # B,K: S(t_k) = prod_{j<=k} (1 - h_j)
    expected = survival.sum(axis=1)  # B: a larger expected survival means a later event
    c_index = concordance_index(test_time, expected, test_event)
    missing = test["mrna_present"].numpy() == 0
    print(f"concordance index (ONNX Runtime, {HELD_OUT} held-out patients): {c_index:.3f}; "
          f"with mRNA {concordance_index(test_time[~missing], expected[~missing], test_event[~missing]):.3f}, "
          f"without {concordance_index(test_time[missing], expected[missing], test_event[missing]):.3f}")
    assert c_index > 0.6


if __name__ == "__main__":
    main()
