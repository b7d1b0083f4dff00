"""mmspec.runtime.diffusion against diffusers' DDPMScheduler / DDIMScheduler (the reference implementation), on
random inputs: schedules, one step of each sampler, the DDIM loop; and the Denoiser, guidance and cascade contracts
on small numpy graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from mmspec.runtime import (
    Denoiser,
    Stage,
    alphas_cumprod,
    betas,
    cascade,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    upsample_nearest,
)

KINDS = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}  # ours: diffusers'
SHAPE = (2, 3, 4, 4)  # B,C,H,W
RTOL, ATOL = 1e-6, 1e-6  # float64 reference; ours returns float32


def _reference(cls, kind: str, train_steps: int, **config):
    return cls(num_train_timesteps=train_steps, beta_schedule=KINDS[kind], beta_start=1e-4, beta_end=0.02, **config)


def _reference64(cls, kind: str, **config):
    """The reference scheduler computing in float64 (its schedule values widened), and that schedule for ours: the
    step formulas compared to rounding, apart from the schedules (compared above). In float32, diffusers' beta_t =
    1 - ab_t / ab_prev loses about 1e-4 absolute near t = 0 to cancellation."""
    ref = _reference(cls, kind, 1000, **config)
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    return ref, ref.alphas_cumprod.numpy()


def _randn(*shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _randn64(*shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("train_steps", [1000, 50])
def test_schedules_equal_diffusers(kind, train_steps):
    ref = _reference(DDPMScheduler, kind, train_steps)
    ours = betas(kind, train_steps)
    np.testing.assert_allclose(ours, ref.betas.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(alphas_cumprod(ours), ref.alphas_cumprod.numpy(), rtol=1e-5, atol=1e-9)


def test_schedule_alias_and_errors():
    np.testing.assert_array_equal(betas("cosine", 10), betas("squaredcos_cap_v2", 10))
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        betas("quadratic")
    with pytest.raises(ValueError, match="at least 1 step"):
        betas("linear", 0)


@pytest.mark.parametrize(("train_steps", "steps"), [(1000, 10), (1000, 7), (50, 50), (20, 3)])
def test_ddim_timesteps_equal_diffusers_leading(train_steps, steps):
    ref = DDIMScheduler(num_train_timesteps=train_steps)
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ddim_timesteps(train_steps, steps), ref.timesteps.numpy())
    with pytest.raises(ValueError, match="DDIM steps must be in"):
        ddim_timesteps(train_steps, train_steps + 1)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("t", [0, 1, 17, 999])
@pytest.mark.parametrize("clip", [False, True])
def test_one_ddpm_step_equals_diffusers(kind, t, clip):
    ref, schedule = _reference64(DDPMScheduler, kind, clip_sample=clip, variance_type="fixed_small")
    x, eps = _randn64(*SHAPE, seed=t), _randn64(*SHAPE, seed=t + 1)  # B,C,H,W
    # diffusers draws its step noise with torch.randn on the generator: draw the same noise for ours.
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=torch.float64).numpy()  # B,C,H,W
    expected = ref.step(torch.from_numpy(eps), t, torch.from_numpy(x), generator=torch.Generator().manual_seed(t))
    ours = ddpm_step(eps, t, x, schedule, z, clip_sample=clip)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected.prev_sample.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("step", [0, 4, 9])
@pytest.mark.parametrize(("eta", "alpha_one", "clip"), [(0.0, True, False), (0.5, False, True), (1.0, True, True)])
def test_one_ddim_step_equals_diffusers(kind, step, eta, alpha_one, clip):
    ref, schedule = _reference64(DDIMScheduler, kind, clip_sample=clip, set_alpha_to_one=alpha_one)
    ref.set_timesteps(10)
    t = int(ref.timesteps[step])
    x, eps, z = (_randn64(*SHAPE, seed=step + k) for k in range(3))  # B,C,H,W each
    expected = ref.step(torch.from_numpy(eps), t, torch.from_numpy(x), eta=eta, variance_noise=torch.from_numpy(z))
    ours = ddim_step(eps, t, t - 100, x, schedule, eta, z, alpha_one, clip)
    np.testing.assert_allclose(ours, expected.prev_sample.numpy(), rtol=RTOL, atol=ATOL)


def _toy_eps(x: np.ndarray, t: np.ndarray, guidance_scale=None) -> np.ndarray:
    """A smooth stand-in for a trained denoiser: eps depends on the sample and the timestep."""
    return (0.3 * np.tanh(x) + 0.01 * np.sin(t[:, None, None, None] / 50.0)).astype(np.float32)  # B,C,H,W


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_loop_equals_diffusers(eta):
    steps, seed = 8, 3
    noise = _randn(*SHAPE, seed=11)  # B,C,H,W
    ref = _reference(DDIMScheduler, "scaled_linear", 1000, clip_sample=False)
    ref.set_timesteps(steps)
    rng = np.random.default_rng(seed)  # the sampler's documented noise stream: one draw per step when eta > 0
    x = torch.from_numpy(noise)
    for t in ref.timesteps:
        eps = torch.from_numpy(_toy_eps(x.numpy(), np.full(len(x), int(t))))
        z = torch.from_numpy(rng.standard_normal(SHAPE, dtype=np.float32)) if eta > 0 else None
        x = ref.step(eps, int(t), x, eta=eta, variance_noise=z).prev_sample
    ours = ddim_sample(_toy_eps, noise, schedule=alphas_cumprod(betas("scaled_linear")), steps=steps, eta=eta,
                       seed=seed)
    np.testing.assert_allclose(ours, x.numpy(), rtol=1e-4, atol=1e-4)


def test_samplers_are_seeded_and_report_progress():
    schedule = alphas_cumprod(betas("linear", 20))
    noise = _randn(*SHAPE, seed=0)  # B,C,H,W
    seen: list[int] = []
    a = ddpm_sample(_toy_eps, noise, schedule=schedule, seed=1, progress=seen.append)
    assert seen == list(range(20))
    np.testing.assert_array_equal(a, ddpm_sample(_toy_eps, noise, schedule=schedule, seed=1))
    assert np.abs(a - ddpm_sample(_toy_eps, noise, schedule=schedule, seed=2)).max() > 1e-3
    seen.clear()
    b = ddim_sample(_toy_eps, noise, schedule=schedule, steps=5, eta=1.0, seed=1, progress=seen.append)
    assert seen == list(range(5))
    assert np.abs(b - ddim_sample(_toy_eps, noise, schedule=schedule, steps=5, eta=1.0, seed=2)).max() > 1e-3
    with pytest.raises(ValueError, match="float32"):
        ddim_sample(_toy_eps, noise.astype(np.float64), schedule=schedule, steps=5)


class LowResGraph:
    """Stage two of a cascade: eps = x - low (the upsampled low-res image), so the sample is pulled toward it."""

    input_names = ["low", "t", "x"]
    output_names = ["eps"]

    def __call__(self, feeds):
        return {"eps": (feeds["x"] - feeds["low"]).astype(np.float32)}  # B,C,H,W


class FakeGraph:
    """A numpy `Graph`: eps = x * (1 + label) + t / 1000, flattened to [B, C*H*W]; records every call's batch."""

    input_names = ["label", "t", "x"]
    output_names = ["eps"]

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, feeds):
        x, t, label = feeds["x"], feeds["t"], feeds["label"]
        self.batches.append(len(x))
        eps = x * (1.0 + label[:, None, None, None]) + t[:, None, None, None] / 1000.0  # B,C,H,W
        return {"eps": eps.reshape(len(x), -1).astype(np.float32)}  # B,C*H*W


def test_denoiser_guidance_is_one_call_on_cond_and_uncond_rows():
    graph = FakeGraph()
    label = np.array([1, 2], dtype=np.int64)  # B
    den = Denoiser(graph, sample="x", timestep="t", eps="eps", cond={"label": label}, uncond={"label": label * 0})
    x, t = _randn(*SHAPE, seed=5), np.array([10, 10], dtype=np.int64)  # B,C,H,W; B
    eps_cond = x * 2 + 0.01, x * 3 + 0.01
    eps_uncond = x + 0.01  # B,C,H,W
    guided = den(x, t, 3.0)
    assert graph.batches == [4]
    expected = eps_uncond + 3.0 * (np.where(np.arange(2)[:, None, None, None] == 0, *eps_cond) - eps_uncond)
    np.testing.assert_allclose(guided, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(den(x, t, 0.0), eps_uncond, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(den(x, t), den(x, t, 1.0), rtol=1e-6, atol=1e-6)
    assert graph.batches[-2:] == [2, 4]


class WrongSizeGraph:
    """eps [B, 50], which no [B, 3, 4, 4] sample can take."""

    input_names = ["t", "x"]
    output_names = ["eps"]

    def __call__(self, feeds):
        return {"eps": np.zeros((len(feeds["x"]), 50), np.float32)}  # B,50


def test_denoiser_errors():
    graph = FakeGraph()
    label = np.zeros(2, dtype=np.int64)  # B
    with pytest.raises(ValueError, match=r"\['y'\] are not inputs of the graph"):
        Denoiser(graph, sample="y", timestep="t", eps="eps", cond={"label": label})
    with pytest.raises(ValueError, match="eps output 'noise'"):
        Denoiser(graph, sample="x", timestep="t", eps="noise", cond={"label": label})
    with pytest.raises(ValueError, match="uncond has inputs"):
        Denoiser(graph, sample="x", timestep="t", eps="eps", cond={"label": label}, uncond={})
    den = Denoiser(graph, sample="x", timestep="t", eps="eps", cond={"label": label})
    x, t = _randn(2, 3, 4, 4, seed=0), np.zeros(2, dtype=np.int64)  # B,C,H,W; B
    with pytest.raises(ValueError, match="guidance needs the unconditional inputs"):
        den(x, t, 2.0)
    wrong = Denoiser(WrongSizeGraph(), sample="x", timestep="t", eps="eps")
    with pytest.raises(ValueError, match=r"'eps' has shape \[2, 50\] \(100 values\), but the sample \[2, 3, 4, 4\]"):
        wrong(x, t)
    with pytest.raises(ValueError, match=r"no value for the graph inputs \['label'\]"):
        Denoiser(graph, sample="x", timestep="t", eps="eps")(x, t)


def test_upsample_nearest():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)  # B,C,h,w
    up = upsample_nearest(x, 4, 6)  # B,C,4,6
    assert up.shape == (1, 2, 4, 6)
    np.testing.assert_array_equal(up[0, 1, 2:, 3:], np.full((2, 3), x[0, 1, 1, 1]))
    with pytest.raises(ValueError, match="not an integer factor"):
        upsample_nearest(x, 3, 4)




def test_cascade_feeds_stage_one_upsampled_to_stage_two():
    schedule = alphas_cumprod(betas("linear", 100))
    label = np.array([1, 3], dtype=np.int64)  # B
    guided = Denoiser(FakeGraph(), "x", "t", "eps", {"label": label}, {"label": label * 0})
    first = Stage(guided, _randn(2, 3, 2, 2, seed=1), guidance_scale=2.0)  # noise B,C,h,w
    second = Stage(Denoiser(LowResGraph(), "x", "t", "eps"), _randn(2, 3, 4, 4, seed=2), low_res="low")
    seen: list[int] = []
    small, big = cascade([first, second], schedule=schedule, steps=5, progress=seen.append)
    assert seen == list(range(10))
    assert small.shape == (2, 3, 2, 2) and big.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(small, ddim_sample(first.denoiser, first.noise, schedule=schedule, steps=5,
                                                  guidance_scale=2.0), rtol=0, atol=0)
    low = upsample_nearest(small, 4, 4)  # B,C,H,W
    direct = ddim_sample(second.denoiser.with_inputs({"low": low}), second.noise, schedule=schedule, steps=5, seed=1)
    np.testing.assert_allclose(big, direct, rtol=0, atol=0)
    assert np.abs(big - ddim_sample(second.denoiser.with_inputs({"low": low * 0}), second.noise, schedule=schedule,
                                    steps=5, seed=1)).max() > 1e-2
    with pytest.raises(ValueError, match="stage 1 needs `low_res`"):
        cascade([first, Stage(second.denoiser, second.noise)], schedule=schedule, steps=5)
