"""Generative objectives (training-only): VAE ELBO, VQ-VAE losses, dVAE Gumbel ELBO, GAN losses with R1,
and diffusion epsilon-prediction. They read the outputs of encoders/decoders/discriminators by reference,
so any component that emits the named tensors can be trained with them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    field_of,
    input_names,
    pick_modality,
    require_rank,
    same_shape,
    tensor,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveFloat, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError

Likelihood = Literal["gaussian", "bernoulli", "laplace"]
NonNegative = Annotated[float, Field(ge=0.0)]


_X = {"x": {"type": "vector", "dim": 4}}
VAE_EXAMPLES = (
    Example(  # mean and log-variance heads, a decoder reading the mean
        _X,
        {"input": "recon", "target": "x", "mean": "mean", "log_var": "log_var", "beta": 0.5},
        {
            "heads": {
                "mean": {"type": "mlp", "input": "x", "dim": 2},
                "log_var": {"type": "mlp", "input": "x", "dim": 2},
                "recon": {"type": "mlp", "input": "mean.embedding", "hidden": [8], "dim": 4},
            }
        },
    ),
)
VQ_EXAMPLES = (
    Example(
        _X,
        {"input": "z_e", "quantized": "z_q", "beta": 0.25},
        {"heads": {"z_e": {"type": "mlp", "input": "x", "dim": 3}, "z_q": {"type": "mlp", "input": "x", "dim": 3}}},
    ),
)
GUMBEL_ELBO_EXAMPLES = (
    Example(  # beta annealed over 4 updates
        _X,
        {"input": "codes", "reconstruction": "recon", "target": "x", "beta": {"steps": 4, "schedule": "linear"}},
        {
            "heads": {
                "codes": {"type": "mlp", "input": "x", "dim": 6},
                "recon": {"type": "mlp", "input": "codes.embedding", "dim": 4},
            }
        },
    ),
)
_GAN_MODALITIES = {
    "noise": {"type": "vector", "dim": 4},
    "data": {"type": "vector", "dim": 3},
    "caption": {"type": "vector", "dim": 2},
}
_GAN_NODES = {
    "fusion": {"conditioned": {"type": "concat", "inputs": ["noise", "caption"]}},
    "heads": {
        "generator": {"type": "mlp", "input": "conditioned.fused", "hidden": [8], "dim": 3},
        "critic": {
            "type": "discriminator",
            "inputs": {"real": "data", "fake": "generator.embedding", "condition": "caption"},
            "hidden": [8],
        },
    },
}
GAN_EXAMPLES = (
    Example(  # matching-aware discriminator (GAN-CLS), updating only the critic
        _GAN_MODALITIES,
        {"role": "discriminator", "real": "critic.real", "fake": "critic.fake", "mismatched": "critic.mismatched",
         "updates": ["critic"]},
        _GAN_NODES,
        name="discriminator",
    ),
    Example(  # hinge generator loss, alternating with the discriminator's update
        _GAN_MODALITIES,
        {"role": "generator", "loss": "hinge", "fake": "critic.fake", "updates": ["generator"]},
        {
            **_GAN_NODES,
            "objectives": {
                "d_loss": {"type": "gan", "role": "discriminator", "loss": "hinge", "real": "critic.real",
                           "fake": "critic.fake", "updates": ["critic"]}
            },
        },
        name="generator",
    ),
    Example(  # GAN-INT: the generator also trained on interpolated captions, through reruns of both networks
        _GAN_MODALITIES,
        {"role": "generator", "fake": "critic_int.fake", "weight": 0.5, "updates": ["generator"]},
        {
            "fusion": {**_GAN_NODES["fusion"], "caption_int": {"type": "interpolate", "input": "caption"},
                       "conditioned_int": {"type": "concat", "inputs": ["noise", "caption_int.mixed"]}},
            "heads": {
                **_GAN_NODES["heads"],
                "generator_int": {"type": "rerun", "node": "generator", "inputs": {"input": "conditioned_int.fused"}},
                "critic_int": {"type": "rerun", "node": "critic", "inputs": {
                    "real": "data", "fake": "generator_int.embedding", "condition": "caption_int.mixed"}},
            },
        },
        name="interpolated",
    ),
)
R1_EXAMPLES = (
    Example(
        _GAN_MODALITIES,
        {"input": "critic.real", "wrt": "data", "gamma": 1.0, "updates": ["critic"]},
        _GAN_NODES,
    ),
    Example(  # DF-GAN's matching-aware gradient penalty: data and condition together, 2 * E ||grad||^6
        _GAN_MODALITIES,
        {"input": "critic.real", "wrt": ["data", "caption"], "gamma": 4.0, "power": 6.0, "updates": ["critic"]},
        _GAN_NODES,
        name="matching_aware",
    ),
)
KL_EXAMPLES = (
    Example({"text": {"type": "vector", "dim": 4}}, {"mean": "ca.mean", "log_var": "ca.log_var", "weight": 2.0},
            {"heads": {"ca": {"type": "conditioning_augmentation", "input": "text", "dim": 3}}}),
)
_DENOISER = {
    "fusion": {"noised": {"type": "concat", "inputs": ["x0", "t"]}},
    "heads": {"eps": {"type": "mlp", "input": "noised.fused", "hidden": [8], "dim": 4}},
}
DIFFUSION_EXAMPLES = (
    Example(  # a linear schedule over 20 steps, the timestep as a float
        {"x0": {"type": "vector", "dim": 4}, "t": {"type": "vector", "dim": 1}},
        {"input": "eps", "image": "x0", "timestep": "t", "schedule": {"steps": 20, "beta_end": 0.2}},
        _DENOISER,
        name="linear",
    ),
    Example(  # the clean data as the target (unCLIP's prior)
        {"x0": {"type": "vector", "dim": 4}, "t": {"type": "vector", "dim": 1}},
        {"input": "eps", "image": "x0", "timestep": "t", "schedule": {"steps": 20}, "target": "x0"},
        _DENOISER,
        name="x0_target",
    ),
    Example(  # an int64 scalar timestep through the sinusoidal scalar encoder (DDPM)
        {"x0": {"type": "vector", "dim": 4}, "t": {"type": "scalar", "dtype": "int64", "high": 30}},
        {"input": "eps", "image": "x0", "timestep": "t", "schedule": {"steps": 30}},
        {
            "encoders": {"t_embed": {"type": "scalar", "input": "t", "embed": "sinusoidal", "dim": 8}},
            "fusion": {"noised": {"type": "concat", "inputs": ["x0", "t_embed"]}},
            "heads": {"eps": {"type": "mlp", "input": "noised.fused", "hidden": [8], "dim": 4}},
        },
        name="scalar",
    ),
    Example(  # cosine schedule, timestep ids embedded by a transformer, classifier-free guidance dropout
        {
            "x0": {"type": "vector", "dim": 4},
            "t": {"type": "tokens", "vocab_size": 50, "length": 1},
            "cond": {"type": "vector", "dim": 3},
        },
        {
            "input": "eps",
            "image": "x0",
            "timestep": "t",
            "schedule": {"kind": "squaredcos_cap_v2", "steps": 50},
            "condition_dropout": {"modality": "cond", "prob": 0.5},
        },
        {
            "encoders": {
                "t_embed": {"type": "transformer", "input": "t", "embed": {"type": "tokens", "positions": 1},
                            "width": 8, "layers": 0, "heads": 2, "ffn": 16, "pool": {"type": "mean"}}
            },
            "fusion": {"noised": {"type": "concat", "inputs": ["x0", "t_embed.pooled", "cond"]}},
            "heads": {"eps": {"type": "mlp", "input": "noised.fused", "hidden": [8], "dim": 4}},
        },
        name="guided",
    ),
)


@register("objectives", training_only=True, examples=VAE_EXAMPLES)
class VAEELBO(Objective):
    """Negative ELBO: NLL(target | input) + beta * KL(N(mean, exp(log_var)) || N(0, I)), per example, averaged.
    `likelihood`: gaussian 0.5 * squared error, bernoulli BCE on logits, laplace absolute error (summed)."""

    type: Literal["vae_elbo"]
    input: Ref
    """The reconstruction."""
    target: Ref
    """What is reconstructed (a modality: the data before any masking)."""
    mean: Ref
    """The encoder's posterior mean."""
    log_var: Ref
    """The encoder's posterior log-variance."""
    beta: NonNegative = 1.0
    """Weight of the KL term (beta-VAE; 1: the plain ELBO)."""
    likelihood: Likelihood = "gaussian"
    """The reconstruction likelihood: `gaussian`, `bernoulli` or `laplace`."""
    ref_fields = ("input", "target", "mean", "log_var")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        same_shape(
            tensor(inputs, "target", self.target, field="target"),
            tensor(inputs, "input", self.input),
            "input",
            self.target,
            self.input,
        )
        same_shape(
            tensor(inputs, "mean", self.mean),
            tensor(inputs, "log_var", self.log_var),
            "log_var",
            self.mean,
            self.log_var,
        )
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import VAEELBO as Module

        return Module(self.likelihood, self.beta)


@register("objectives", training_only=True, examples=VQ_EXAMPLES)
class VQLosses(Objective):
    """VQ-VAE: codebook loss mean((sg[z_e] - z_q)^2) + beta * commitment mean((z_e - sg[z_q])^2). `input`: the
    encoder output z_e; `quantized`: the chosen codebook vectors z_q (not the straight-through output, which
    the quantizer passes on as z_e + sg(z_q - z_e))."""

    type: Literal["vq_losses"]
    input: Ref
    quantized: Ref
    """The chosen codebook vectors z_q (the quantizer's `codebook_vectors`)."""
    beta: NonNegative = 0.25
    """Weight of the commitment term."""
    ref_fields = ("input", "quantized")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        same_shape(
            tensor(inputs, "input", self.input),
            tensor(inputs, "quantized", self.quantized, field="quantized"),
            "quantized",
            self.input,
            self.quantized,
        )
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import VQLoss

        return VQLoss(self.beta)


class Anneal(StrictModel):
    """A weight annealed from `start` to `end` over `steps` updates (linear or cosine), then constant."""

    start: NonNegative = 0.0
    end: NonNegative = 6.6
    steps: PositiveInt = 5000
    schedule: Literal["linear", "cosine"] = "cosine"


@register("objectives", training_only=True, examples=GUMBEL_ELBO_EXAMPLES)
class GumbelELBO(Objective):
    """dVAE (DALL-E stage 1) ELBO: NLL(target | reconstruction) + beta * KL(softmax(logits) || uniform over K),
    the KL summed over latent positions; beta is annealed (DALL-E: 0 -> 6.6 over 5000 updates). `input`: the
    encoder's code logits [batch, ..., K]; the encoder samples codes with mmspec.components.objectives.generative.loss
    .gumbel_softmax."""

    type: Literal["gumbel_elbo"]
    input: Ref
    reconstruction: Ref
    """The decoder's reconstruction (the likelihood's parameters)."""
    target: Ref
    """What is reconstructed (a modality: the data the encoder saw)."""
    beta: Anneal = Anneal()
    """Weight of the KL term, annealed from its start to its end value over training."""
    likelihood: Likelihood = "laplace"
    """The reconstruction likelihood: `gaussian`, `bernoulli` or `laplace`."""
    ref_fields = ("input", "reconstruction", "target")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input, "logits"), (2, 3, 4, 5), "input", "code logits", self.input)
        same_shape(
            tensor(inputs, "target", self.target, field="target"),
            tensor(inputs, "reconstruction", self.reconstruction, field="reconstruction"),
            "reconstruction",
            self.target,
            self.reconstruction,
        )
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import GumbelELBO as Module

        b = self.beta
        return Module(self.likelihood, b.start, b.end, b.steps, b.schedule)


@register("objectives", training_only=True, examples=GAN_EXAMPLES)
class GAN(Objective):
    """An adversarial loss on discriminator logits: minimax, non-saturating or hinge.

    role `discriminator` reads `real` and `fake` (and `mismatched`: real data with a wrong condition, for
    matching-aware GAN-CLS); role `generator` reads `fake`.
    `loss`: minimax, non_saturating or hinge. Give each role its `updates:` (the discriminator's, the
    generator's node) so that `mmspec fit` alternates their optimizer steps."""

    type: Literal["gan"]
    role: Literal["discriminator", "generator"]
    """Which network this loss trains: the `discriminator` or the `generator`."""
    loss: Literal["minimax", "non_saturating", "hinge"] = "non_saturating"
    """The adversarial loss: `minimax`, `non_saturating` (the generator maximises log D(G(z))) or `hinge`."""
    fake: Ref
    """The discriminator's logits on generated data."""
    real: Ref | None = None
    """The discriminator's logits on real data (the discriminator's loss)."""
    mismatched: Ref | None = None
    """The discriminator's logits on real data with a wrong condition (matching-aware GAN-CLS); null: none."""
    ref_fields = ("fake", "real", "mismatched")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        fake = tensor(inputs, "fake", self.fake, field="fake")
        if self.role == "discriminator" and self.real is None:
            raise CheckError("real", "role discriminator needs `real`: its logits on real data")
        if self.role == "generator" and (self.real or self.mismatched):
            raise CheckError("real" if self.real else "mismatched", "role generator reads only `fake`")
        for fld in ("real", "mismatched"):
            if getattr(self, fld) is not None:
                same_shape(fake, tensor(inputs, fld, getattr(self, fld), field=fld), fld, self.fake, getattr(self, fld))
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import GANLoss

        return GANLoss(self.role, self.loss)


@register("objectives", training_only=True, examples=KL_EXAMPLES)
class GaussianKL(Objective):
    """KL(N(mean, exp(log_var)) || N(0, I)) averaged over every element: StackGAN's regulariser of the
    conditioning augmentation (weight 2 in the paper). `mean`, `log_var`: tensors of one shape."""

    type: Literal["gaussian_kl"]
    mean: Ref
    """The Gaussian's mean."""
    log_var: Ref
    """The Gaussian's log-variance (same shape as `mean`)."""
    ref_fields = ("mean", "log_var")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        mean = tensor(inputs, "mean", self.mean, "mean", field="mean")
        same_shape(mean, tensor(inputs, "log_var", self.log_var, "log_var", field="log_var"), "log_var", self.mean,
                   self.log_var)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import GaussianKL as Module

        return Module(field_of(inputs, "mean", "mean"), field_of(inputs, "log_var", "log_var"))


@register("objectives", training_only=True, examples=R1_EXAMPLES)
class R1Penalty(Objective):
    """Zero-centred gradient penalty on real data: gamma / 2 * E ||d D(x) / d x||^power, the gradient taken
    with respect to every modality of `wrt` together (one norm over all of them). R1 (StyleGAN) is the default
    `power: 2` with the real images as `wrt`; DF-GAN's matching-aware penalty MA-GP is `wrt: [image, sentence],
    gamma: 4, power: 6` (2 * E ||(grad_image, grad_sentence)||^6). `input`: the discriminator's logits on the
    real data (with the matching condition)."""

    type: Literal["r1_penalty"]
    input: Ref
    wrt: Name | list[Name]
    """The modality (or modalities, one norm over all) the gradient is taken with respect to."""
    gamma: PositiveFloat = 10.0
    """Weight gamma of the penalty (gamma / 2 * E ||grad||^power)."""
    power: PositiveFloat = 2.0
    """Exponent of the gradient's L2 norm (R1: 2; MA-GP: 6)."""

    def _wrt(self) -> list[str]:
        return [self.wrt] if isinstance(self.wrt, str) else self.wrt

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        tensor(inputs, "input", self.input)
        if not self._wrt():
            raise CheckError("wrt", "wrt names no modality; list the inputs to differentiate")
        for i, name in enumerate(self._wrt()):
            pick_modality(ctx.spec, name, self.input, ("image", "regions", "sequence", "vector"),
                          "wrt" if isinstance(self.wrt, str) else ("wrt", i), "differentiate")
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import R1Penalty as Module

        names = [n for m in self._wrt() for n in input_names(ctx.spec, m).values()]
        return Module(names, self.gamma, self.power)


class NoiseSchedule(StrictModel):
    """Diffusion beta schedule over `steps` timesteps: linear (DDPM 1e-4 .. 0.02), scaled_linear, or
    squaredcos_cap_v2 (improved DDPM's cosine)."""

    kind: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    steps: PositiveInt = 1000
    beta_start: PositiveFloat = 1e-4
    beta_end: PositiveFloat = 0.02


class ConditionDropout(StrictModel):
    """Classifier-free guidance training: the condition modality of a `prob` fraction of examples is replaced
    by the null condition (token ids -> `null_token`, mask and float features -> 0)."""

    modality: Name
    prob: Probability = 0.1
    null_token: Annotated[int, Field(ge=0)] = 0


@register("objectives", training_only=True, examples=DIFFUSION_EXAMPLES)
class DiffusionEpsMSE(Objective):
    """DDPM epsilon-prediction: the batch holds x_0 in `image`; the objective samples t uniformly and the
    noise, feeds x_t and t to the model (the `timestep` modality: a `scalar`, a `vector` of dim 1, or `tokens` of
    length 1), and
    regresses the denoiser's `input` output on the noise (mean squared error), or with `target: x0` on the clean
    x_0 (unCLIP's prior predicts the clean CLIP image embedding)."""

    type: Literal["diffusion_eps_mse"]
    input: Ref
    image: Name
    """The modality that holds the clean data x_0 (the objective feeds x_t in its place)."""
    timestep: Name
    """The modality that receives the sampled timestep t."""
    schedule: NoiseSchedule = NoiseSchedule()
    """The beta schedule the noise is added with (the sampler must use the same)."""
    condition_dropout: ConditionDropout | None = None
    """Classifier-free guidance training: which condition is dropped, how often; null: never."""
    target: Literal["eps", "x0"] = "eps"
    """What `input` predicts and is regressed on: the noise eps, or the clean data x_0."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pred = tensor(inputs, "input", self.input, "eps")
        m = ctx.spec.modalities
        pick_modality(ctx.spec, self.image, self.input, ("image", "sequence", "vector", "regions"), "image", "noise")
        x0 = next(iter(m[self.image].bundle(self.image).values()))
        if pred.shape != x0.shape:
            raise CheckError(
                "input",
                f"the prediction {list(pred.shape)} of {self.input!r} must have the shape "
                f"{list(x0.shape)} of the noised {self.image!r}",
            )
        t = m.get(self.timestep)
        ok = t is not None and (t.type == "scalar" or (t.type == "vector" and t.dim == 1)
                                or (t.type == "tokens" and t.length == 1))
        if not ok:
            raise CheckError(
                "timestep",
                f"timestep {self.timestep!r} must be a `scalar` modality, a `vector` modality with dim 1 or a "
                "`tokens` modality with length 1",
            )
        top = t.vocab_size if t.type == "tokens" else t.high if t.type == "scalar" and t.dtype == "int64" else None
        if top is not None and (top < self.schedule.steps or (t.type == "scalar" and (t.low or 0) > 0)):
            bound, fix = ("vocab_size", "vocab_size") if t.type == "tokens" else ("bounds", "low: 0, high")
            raise CheckError(
                "timestep",
                f"timestep ids run from 0 to {self.schedule.steps - 1} but the {bound} of {self.timestep!r} do not "
                f"cover them; give it {fix} >= {self.schedule.steps}",
            )
        if self.condition_dropout is not None and self.condition_dropout.modality not in m:
            raise CheckError(
                ("condition_dropout", "modality"),
                f"condition_dropout.modality {self.condition_dropout.modality!r} is not a modality",
            )
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.generative.loss import DiffusionEps

        cond: dict[str, float] = {}
        if (cd := self.condition_dropout) is not None:
            for fld, name in input_names(ctx.spec, cd.modality).items():
                cond[name] = cd.null_token if fld == "ids" else 0.0
        names = input_names(ctx.spec, self.image)
        image = names.get("pixels") or names.get("values") or names["features"]
        timestep = input_names(ctx.spec, self.timestep)
        s = self.schedule
        return DiffusionEps(
            image,
            timestep.get("ids") or timestep["values"],
            s.kind,
            s.steps,
            s.beta_start,
            s.beta_end,
            cond,
            self.condition_dropout.prob if self.condition_dropout else 0.0,
            self.target,
        )
