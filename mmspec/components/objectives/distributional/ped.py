"""Piecewise-exponential data (PED): the preprocessing stage of piecewise-exponential additive models (DeepPAMM).

Follow-up is cut at `cuts` (0 = c_0 < c_1 < ... < c_J); subject i with time t_i and event d_i contributes one row
per interval (c_j, c_{j+1}] it entered (c_j < t_i): exposure min(t_i, c_{j+1}) - c_j, and event d_i in the interval
holding t_i, 0 before. With a constant hazard lambda_j per interval, the Poisson log-likelihood of these rows
(counts `event`, means lambda_j * exposure) equals the survival log-likelihood up to terms free of lambda, so a
Poisson model with offset log(exposure) fits the hazard (`distribution_nll` with `exposure: true`). Covariates are
repeated per row by `subject`; the interval's start or midpoint feeds the baseline-hazard spline.
"""

from __future__ import annotations

import numpy as np


def piecewise_exponential(time, event, cuts) -> dict[str, np.ndarray]:
    """Rows of the PED format: `subject`, `interval` (j), `start` (c_j), `end` (c_{j+1}), `exposure`, `event`.

    `time` > 0 and `event` in {0, 1} per subject; `cuts` increasing, starting at 0, its last entry at least the
    largest time (later times raise ValueError)."""
    time, event, cuts = np.asarray(time, float), np.asarray(event, int), np.asarray(cuts, float)
    if cuts[0] != 0 or np.any(np.diff(cuts) <= 0):
        raise ValueError(f"cuts must increase from 0, got {cuts.tolist()}")
    if np.any(time <= 0) or np.any(time > cuts[-1]):
        raise ValueError(f"times must lie in (0, {cuts[-1]}] (the last cut)")
    last = np.searchsorted(cuts, time, side="left") - 1  # index j of the interval (c_j, c_{j+1}] holding t_i
    counts = last + 1
    subject = np.repeat(np.arange(len(time)), counts)
    interval = np.concatenate([np.arange(n) for n in counts])
    start, end = cuts[interval], cuts[interval + 1]
    exposure = np.minimum(time[subject], end) - start
    rows_event = np.where(interval == last[subject], event[subject], 0)
    return {"subject": subject, "interval": interval, "start": start, "end": end, "exposure": exposure,
            "event": rows_event}
