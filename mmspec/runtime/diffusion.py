"""Diffusion sampling on runtime `Graph`s: noise schedules, DDPM and DDIM samplers, classifier-free guidance,
classifier (or CLIP) guidance and a two-stage cascade. numpy only; every random draw comes from
`np.random.default_rng(seed)` and the initial noise is an argument, so ONNX Runtime and the eager model sample the
same image from the same seed and noise.

Conventions (docs/generation.md, "Diffusion sampling"):

- A schedule is `alphas_cumprod` [T] (float64): alpha-bar_t for the train timesteps t = 0..T-1, built by
  `alphas_cumprod(betas(kind, T))`.
- The model predicts epsilon (the added noise) from the noisy sample x_t and the int64 timestep t.
- `denoise(x, t, guidance_scale)` is what the samplers call: x float32 [B, ...], t int64 [B] -> eps [B, ...].
  `Denoiser` builds one from a `Graph`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmspec.runtime.graphs import Graph

DenoiseFn = Callable[[np.ndarray, np.ndarray, float | None], np.ndarray]
Progress = Callable[[int], None]
SCHEDULES = ("linear", "scaled_linear", "cosine", "squaredcos_cap_v2")


def betas(kind: str, steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    """Noise schedule beta_0..beta_{T-1} [steps] (float64).

    `linear`: DDPM, evenly spaced from `start` to `end`. `scaled_linear`: latent diffusion, the squares of evenly
    spaced values from sqrt(start) to sqrt(end). `cosine` (alias `squaredcos_cap_v2`, the name the
    `diffusion_eps_mse` objective uses): improved DDPM, beta_i = 1 - f((i+1)/T) / f(i/T) with
    f(u) = cos((u + 0.008) / 1.008 * pi/2)^2, capped at 0.999; it ignores `start` and `end`."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; use one of {list(SCHEDULES)}")
    if steps < 1:
        raise ValueError(f"a schedule needs at least 1 step, got {steps}")
    if kind == "linear":
        return np.linspace(start, end, steps, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(math.sqrt(start), math.sqrt(end), steps, dtype=np.float64) ** 2
    u = np.arange(steps + 1, dtype=np.float64) / steps  # T+1
    f = np.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # T+1
    return np.minimum(1.0 - f[1:] / f[:-1], 0.999)


def alphas_cumprod(beta: np.ndarray) -> np.ndarray:
    """alpha-bar_t = prod_{s <= t} (1 - beta_s) [T]: the schedule the samplers take."""
    return np.cumprod(1.0 - np.asarray(beta, dtype=np.float64))


@dataclass(frozen=True)
class Denoiser:
    """A `Graph` as the samplers' `denoise(x, t, guidance_scale) -> eps`, named by role.

    `sample`, `timestep`: the graph inputs that get x_t (float32 [B, ...]) and t (int64 [B]); `eps`: the output
    holding the predicted noise, [B, ...] or flattened [B, prod(...)] (reshaped to x's shape). `cond`: every other
    input, [B, ...] each (class labels, text ids, a low-resolution image). `uncond`: the same inputs for the
    unconditional branch (null label, empty text), needed for guidance.

    With a guidance scale s, one graph call runs the 2B rows [x; x], [t; t], [cond; uncond] and returns
    eps_uncond + s * (eps_cond - eps_uncond); s = 1 is the conditional prediction, s = 0 the unconditional one.
    Without (None), one call on the B conditional rows."""

    graph: Graph
    sample: str
    timestep: str
    eps: str
    cond: dict[str, np.ndarray] = field(default_factory=dict)
    uncond: dict[str, np.ndarray] | None = None

    def __post_init__(self):
        unknown = {self.sample, self.timestep, *self.cond} - set(self.graph.input_names)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not inputs of the graph; it takes {self.graph.input_names}")
        if self.eps not in self.graph.output_names:
            raise ValueError(f"eps output {self.eps!r} is not among the outputs {self.graph.output_names}")
        if self.uncond is not None and set(self.uncond) != set(self.cond):
            raise ValueError(f"uncond has inputs {sorted(self.uncond)}, cond has {sorted(self.cond)}; they must match")

    def with_inputs(self, feeds: dict[str, np.ndarray]) -> Denoiser:
        """A copy with `feeds` added to (or replacing) both the conditional and the unconditional inputs."""
        uncond = None if self.uncond is None else {**self.uncond, **feeds}
        return dataclasses.replace(self, cond={**self.cond, **feeds}, uncond=uncond)

    def __call__(self, x: np.ndarray, t: np.ndarray, guidance_scale: float | None = None) -> np.ndarray:
        if guidance_scale is None:
            return self._eps({self.sample: x, self.timestep: t, **self.cond}, x.shape)
        if self.uncond is None:
            raise ValueError("guidance needs the unconditional inputs: give the Denoiser `uncond`")
        feeds = {self.sample: np.concatenate([x, x]), self.timestep: np.concatenate([t, t])}  # 2B,...
        feeds |= {n: np.concatenate([self.cond[n], self.uncond[n]]) for n in self.cond}  # 2B,...
        eps = self._eps(feeds, (2 * len(x), *x.shape[1:]))  # 2B,...
        eps_cond, eps_uncond = eps[: len(x)], eps[len(x):]  # B,...
        return eps_uncond + np.float32(guidance_scale) * (eps_cond - eps_uncond)  # B,...

    def _eps(self, feeds: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        missing = [n for n in self.graph.input_names if n not in feeds]
        if missing:
            raise ValueError(f"no value for the graph inputs {missing}: give them in `cond` (and `uncond`)")
        out = self.graph(feeds)[self.eps]
        if out.size != math.prod(shape):
            raise ValueError(f"output {self.eps!r} has shape {list(out.shape)} ({out.size} values), but the sample "
                             f"{list(shape)} needs {math.prod(shape)}")
        return out.reshape(shape)


def classifier_guidance(denoise: DenoiseFn, gradient: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        schedule: np.ndarray, scale: float) -> DenoiseFn:
    """`denoise` steered by a guide (Dhariwal & Nichol 2021, Algorithm 2; the score form of Algorithm 1):
    eps - sqrt(1 - ab_t) * scale * gradient(x, t), where `gradient(x, t)` [B, ...] is the gradient with respect to
    x_t of log p(y | x_t) under a noisy-image classifier, or of a CLIP similarity (CLIP guidance). The guide's
    gradient comes from the caller (ONNX graphs have none); both samplers take the result."""
    schedule = np.asarray(schedule, dtype=np.float64)

    def guided(x: np.ndarray, t: np.ndarray, guidance_scale: float | None = None) -> np.ndarray:
        eps = denoise(x, t, guidance_scale)  # B,...
        root = np.sqrt(1.0 - schedule[t]).reshape(-1, *([1] * (x.ndim - 1)))  # B,1,...
        return (eps - root * scale * gradient(x, t)).astype(np.float32)  # B,...

    return guided


def from_x0(denoise: DenoiseFn, schedule: np.ndarray) -> DenoiseFn:
    """A denoiser whose output is the clean sample x0 (unCLIP's prior) as the samplers' noise prediction:
    eps = (x_t - sqrt(ab_t) * x0) / sqrt(1 - ab_t). Guidance combines x0 linearly, so it commutes."""
    schedule = np.asarray(schedule, dtype=np.float64)

    def as_eps(x: np.ndarray, t: np.ndarray, guidance_scale: float | None = None) -> np.ndarray:
        x0 = denoise(x, t, guidance_scale)  # B,...
        shape = (-1, *([1] * (x.ndim - 1)))
        ab, rest = np.sqrt(schedule[t]).reshape(shape), np.sqrt(1.0 - schedule[t]).reshape(shape)  # B,1,...
        return ((x - ab * x0) / rest).astype(np.float32)  # B,...

    return as_eps


def dynamic_threshold(x0: np.ndarray, percentile: float) -> np.ndarray:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Section 2.3): per example s = max(1, the `percentile`
    quantile of |x0|), then x0 clipped to [-s, s] and divided by s."""
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"the dynamic-thresholding percentile must be in (0, 1), got {percentile}")
    s = np.maximum(np.quantile(np.abs(x0).reshape(len(x0), -1), percentile, axis=1), 1.0)  # B
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))  # B,1,...
    return (np.clip(x0, -s, s) / s).astype(x0.dtype)  # B,...


def _clip(x0: np.ndarray, clip_sample: bool | float) -> np.ndarray:
    """`clip_sample`: False keeps x0, True clips it to [-1, 1], a float p in (0, 1) thresholds it dynamically at the
    p-th percentile (Imagen)."""
    if isinstance(clip_sample, float):
        return dynamic_threshold(x0, clip_sample)
    return np.clip(x0, -1.0, 1.0) if clip_sample else x0


def _check(noise: np.ndarray, schedule: np.ndarray) -> None:
    if noise.dtype != np.float32 or noise.ndim < 2:
        raise ValueError(f"noise must be float32 [batch, ...], got {noise.dtype} {list(noise.shape)}")
    if schedule.ndim != 1 or not (0 < schedule.min() and schedule.max() <= 1):
        raise ValueError("schedule must be alphas_cumprod [T], values in (0, 1]")


def ddpm_step(eps: np.ndarray, t: int, x: np.ndarray, schedule: np.ndarray, noise: np.ndarray | None,
              clip_sample: bool | float = False) -> np.ndarray:
    """One ancestral DDPM step x_t -> x_{t-1} (epsilon prediction, posterior variance beta-tilde).

    x0 = (x - sqrt(1 - ab_t) eps) / sqrt(ab_t), clipped by `clip_sample` (see _clip); then the posterior mean
    sqrt(ab_prev) beta_t / (1 - ab_t) x0 + sqrt(alpha_t) (1 - ab_prev) / (1 - ab_t) x, plus
    sqrt(beta-tilde_t) * noise with beta-tilde_t = (1 - ab_prev) / (1 - ab_t) beta_t when t > 0; ab_prev = 1 at
    t = 0 and beta_t = 1 - ab_t / ab_prev (so a respaced schedule works too). `noise` (x's shape) is needed for
    t > 0 only."""
    ab_t = float(schedule[t])
    ab_prev = float(schedule[t - 1]) if t > 0 else 1.0
    beta_t = 1.0 - ab_t / ab_prev
    x0 = _clip((x - math.sqrt(1.0 - ab_t) * eps) / math.sqrt(ab_t), clip_sample)  # B,...
    mean = (math.sqrt(ab_prev) * beta_t / (1.0 - ab_t)) * x0 + (
        math.sqrt(1.0 - beta_t) * (1.0 - ab_prev) / (1.0 - ab_t)) * x  # B,...
    if t > 0:
        variance = max((1.0 - ab_prev) / (1.0 - ab_t) * beta_t, 1e-20)
        mean = mean + math.sqrt(variance) * noise  # B,...
    return mean.astype(np.float32)


def ddim_timesteps(train_steps: int, steps: int) -> np.ndarray:
    """The `steps` timesteps DDIM visits, "leading" spacing: k * (T // steps) for k = steps-1 .. 0 (int64)."""
    if not 1 <= steps <= train_steps:
        raise ValueError(f"DDIM steps must be in 1..{train_steps} (the schedule's length), got {steps}")
    return (np.arange(steps, dtype=np.int64) * (train_steps // steps))[::-1]


def ddim_step(eps: np.ndarray, t: int, prev_t: int, x: np.ndarray, schedule: np.ndarray, eta: float = 0.0,
              noise: np.ndarray | None = None, set_alpha_to_one: bool = True,
              clip_sample: bool | float = False) -> np.ndarray:
    """One DDIM step x_t -> x_{prev_t} (epsilon prediction; Song et al. 2021, eq. 12).

    x0 = (x - sqrt(1 - ab_t) eps) / sqrt(ab_t) (clipped with `clip_sample`), sigma = eta * sqrt((1 - ab_prev) /
    (1 - ab_t) * (1 - ab_t / ab_prev)), x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise.
    Past the first train timestep (prev_t < 0) ab_prev is 1.0 with `set_alpha_to_one`, else alphas_cumprod[0]."""
    ab_t = float(schedule[t])
    ab_prev = float(schedule[prev_t]) if prev_t >= 0 else 1.0 if set_alpha_to_one else float(schedule[0])
    x0 = _clip((x - math.sqrt(1.0 - ab_t) * eps) / math.sqrt(ab_t), clip_sample)  # B,...
    sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0)) * eps  # B,...
    if sigma > 0:
        x_prev = x_prev + sigma * noise  # B,...
    return x_prev.astype(np.float32)


def ddpm_sample(denoise: DenoiseFn, noise: np.ndarray, *, schedule: np.ndarray, seed: int = 0,
                guidance_scale: float | None = None, clip_sample: bool | float = False,
                progress: Progress | None = None) -> np.ndarray:
    """Ancestral DDPM sampling over every timestep of `schedule` (T-1 .. 0), starting from `noise` x_T
    (float32 [B, ...]); the step noises are drawn from `np.random.default_rng(seed)`. Returns x_0 [B, ...].
    `progress(i)` is called after step i (0 .. T-1)."""
    schedule = np.asarray(schedule, dtype=np.float64)
    _check(noise, schedule)
    rng = np.random.default_rng(seed)
    x = noise  # B,...
    for i, t in enumerate(range(len(schedule) - 1, -1, -1)):
        eps = denoise(x, np.full(len(x), t, dtype=np.int64), guidance_scale)  # B,...
        z = rng.standard_normal(x.shape, dtype=np.float32) if t > 0 else None  # B,...
        x = ddpm_step(eps, t, x, schedule, z, clip_sample)
        if progress:
            progress(i)
    return x


def ddim_sample(denoise: DenoiseFn, noise: np.ndarray, *, schedule: np.ndarray, steps: int, eta: float = 0.0,
                seed: int = 0, guidance_scale: float | None = None, set_alpha_to_one: bool = True,
                clip_sample: bool | float = False, progress: Progress | None = None) -> np.ndarray:
    """DDIM sampling in `steps` steps ("leading" spacing, `ddim_timesteps`), starting from `noise` (float32
    [B, ...]); eta = 0 is deterministic, eta = 1 has DDPM's variance, and step noises come from
    `np.random.default_rng(seed)` (drawn only when eta > 0). Returns x_0 [B, ...]. `progress(i)` after step i."""
    schedule = np.asarray(schedule, dtype=np.float64)
    _check(noise, schedule)
    rng = np.random.default_rng(seed)
    timesteps = ddim_timesteps(len(schedule), steps)
    stride = len(schedule) // steps
    x = noise  # B,...
    for i, t in enumerate(timesteps):
        eps = denoise(x, np.full(len(x), t, dtype=np.int64), guidance_scale)  # B,...
        z = rng.standard_normal(x.shape, dtype=np.float32) if eta > 0 else None  # B,...
        x = ddim_step(eps, int(t), int(t) - stride, x, schedule, eta, z, set_alpha_to_one, clip_sample)
        if progress:
            progress(i)
    return x


@dataclass(frozen=True)
class Stage:
    """One stage of a `cascade`: its denoiser, its initial noise (float32 [B, C, H, W]), its guidance scale (None:
    conditional only) and, from the second stage on, `low_res`: the denoiser input that gets the previous stage's
    sample."""

    denoiser: Denoiser
    noise: np.ndarray
    guidance_scale: float | None = None
    low_res: str | None = None


def upsample_nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """[B, C, h, w] -> [B, C, height, width] by repeating each pixel; the sizes must be integer multiples."""
    h, w = x.shape[-2:]
    if height % h or width % w:
        raise ValueError(f"cannot upsample {h}x{w} to {height}x{width} by repetition: not an integer factor")
    return np.repeat(np.repeat(x, height // h, axis=-2), width // w, axis=-1)  # B,C,height,width


def cascade(stages: Sequence[Stage], *, schedule: np.ndarray, steps: int, eta: float = 0.0, seed: int = 0,
            progress: Progress | None = None) -> list[np.ndarray]:
    """Cascaded sampling: each stage runs `ddim_sample` (stage k with seed `seed + k`); from the second stage on,
    the previous stage's sample, upsampled to this stage's noise size by `upsample_nearest`, is fed as input
    `low_res` to both the conditional and the unconditional rows (guidance acts on the other conditions only).
    Returns every stage's sample, the last one the final image. `progress(i)` counts steps across stages."""
    samples: list[np.ndarray] = []
    for k, stage in enumerate(stages):
        denoiser = stage.denoiser
        if k > 0:
            if stage.low_res is None:
                raise ValueError(f"stage {k} needs `low_res`, the input that gets stage {k - 1}'s sample")
            low = upsample_nearest(samples[-1], *stage.noise.shape[-2:])  # B,C,H,W
            denoiser = denoiser.with_inputs({stage.low_res: low})
        step_progress = None if progress is None else lambda i, base=k * steps: progress(base + i)
        samples.append(ddim_sample(denoiser, stage.noise, schedule=schedule, steps=steps, eta=eta, seed=seed + k,
                                   guidance_scale=stage.guidance_scale, progress=step_progress))
    return samples
