"""Losses of the generative objectives: VAE/VQ/dVAE ELBOs, GANs, R1, diffusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.blocks.masking import bernoulli
from mmspec.blocks.schedules import alphas_cumprod, momentum
from mmspec.components.objectives.runtime import Batch, ObjectiveModule, StepContext, one


def reconstruction_nll(recon: torch.Tensor, target: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-example negative log-likelihood up to a constant, summed over all but the batch axis:
    `gaussian` (unit variance) 0.5 * sum (x - x^)^2; `bernoulli` (recon are logits) BCE; `laplace` sum |x - x^|."""
    if likelihood == "gaussian":
        err = 0.5 * (recon - target) ** 2
    elif likelihood == "bernoulli":
        err = F.binary_cross_entropy_with_logits(recon, target, reduction="none")
    else:
        err = (recon - target).abs()
    return err.flatten(1).sum(1)  # B


class VAEELBO(ObjectiveModule):
    """Negative ELBO per example, averaged: NLL(target | recon) + beta * KL(N(mean, exp(log_var)) || N(0, I)),
    KL = -0.5 * sum(1 + log_var - mean^2 - exp(log_var)). The encoder samples z = mean + exp(log_var / 2) * eps."""

    def __init__(self, likelihood: str, beta: float):
        super().__init__()
        self.likelihood, self.beta = likelihood, beta

    def forward(self, args, targets):
        mean, log_var = one(args["mean"]), one(args["log_var"])  # B,Z
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).flatten(1).sum(1)  # B
        nll = reconstruction_nll(one(args["input"]), one(args["target"]), self.likelihood)  # B
        return (nll + self.beta * kl).mean()


def straight_through(latent: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Value of `quantized`, gradient of the identity to `latent` (VQ-VAE's straight-through estimator)."""
    return latent + (quantized - latent).detach()


class VQLoss(ObjectiveModule):
    """VQ-VAE: mean((sg[z_e] - z_q)^2) (moves the codebook) + beta * mean((z_e - sg[z_q])^2) (commitment).
    `quantized` must be the chosen codebook vectors themselves, not the straight-through output."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, args, targets):
        z_e, z_q = one(args["input"]), one(args["quantized"])
        return F.mse_loss(z_q, z_e.detach()) + self.beta * F.mse_loss(z_e, z_q.detach())


def gumbel_softmax(logits: torch.Tensor, tau: float, g: torch.Generator, hard: bool = False) -> torch.Tensor:
    """Relaxed one-hot sample softmax((logits + Gumbel noise) / tau) over the last axis; `hard`: one-hot values
    with the relaxed gradient (straight-through). The sampler of dVAE encoders."""
    u = torch.rand(logits.shape, generator=g).clamp(1e-10, 1 - 1e-10)
    y = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    if not hard:
        return y
    return straight_through(y, F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype))


class GumbelELBO(ObjectiveModule):
    """dVAE (DALL-E stage 1): NLL(target | recon) + beta * KL(q(z|x) || uniform over K codes), with
    KL = sum over latent positions of sum_k q_k log(q_k K), q = softmax(logits); beta follows its schedule
    (start -> end over `steps` updates, linear or cosine), averaged over examples."""

    def __init__(self, likelihood: str, beta_start: float, beta_end: float, beta_steps: int, schedule: str):
        super().__init__()
        self.likelihood, self.schedule = likelihood, (beta_start, beta_end, schedule, beta_steps)
        self.step = 0

    @property
    def beta(self) -> float:
        start, end, kind, steps = self.schedule
        return momentum(start, end, kind, self.step, steps)

    def forward(self, args, targets):
        logits = one(args["input"])  # B,...,K
        logq = F.log_softmax(logits, dim=-1)
        kl = (logq.exp() * (logq + torch.log(torch.tensor(float(logits.shape[-1]))))).flatten(1).sum(1)  # B
        nll = reconstruction_nll(one(args["reconstruction"]), one(args["target"]), self.likelihood)  # B
        return (nll + self.beta * kl).mean()

    def after_step(self, step: int, total: int) -> None:
        self.step = step + 1


class GANLoss(ObjectiveModule):
    """Adversarial losses on discriminator logits. Discriminator: minimax/non_saturating
    softplus(-real) + softplus(fake), hinge relu(1 - real) + relu(1 + fake); matching-aware (GAN-CLS) replaces
    the fake term by the mean of the fake and mismatched terms. Generator: minimax -softplus(fake)
    (= log(1 - D)), non_saturating softplus(-fake) (= -log D), hinge -fake. Means over examples."""

    def __init__(self, role: str, kind: str):
        super().__init__()
        self.role, self.kind = role, kind

    def forward(self, args, targets):
        fake = one(args["fake"])
        if self.role == "generator":
            if self.kind == "minimax":
                return -F.softplus(fake).mean()
            return (-fake).mean() if self.kind == "hinge" else F.softplus(-fake).mean()
        real = one(args["real"])

        def neg(x):  # the discriminator's loss on something it should call fake
            return F.relu(1 + x).mean() if self.kind == "hinge" else F.softplus(x).mean()

        pos = F.relu(1 - real).mean() if self.kind == "hinge" else F.softplus(-real).mean()
        if "mismatched" in args:
            return pos + (neg(fake) + neg(one(args["mismatched"]))) / 2
        return pos + neg(fake)


class GaussianKL(ObjectiveModule):
    """mean over elements of -0.5 * (1 + log_var - mean^2 - exp(log_var)) (StackGAN's KL_loss)."""

    def __init__(self, mean: str, log_var: str):
        super().__init__()
        self.mean, self.log_var = mean, log_var

    def forward(self, args, targets):
        mean, log_var = one(args["mean"], self.mean), one(args["log_var"], self.log_var)  # B,c each
        return (-0.5 * (1 + log_var - mean**2 - log_var.exp())).mean()


class R1Penalty(ObjectiveModule):
    """R1 (Mescheder et al. 2018): gamma / 2 * mean over examples of ||d sum D(x) / d x||^power on real data x,
    the graph inputs `names` (which `mmspec fit` makes require gradients), one L2 norm over all of them; power 2
    is R1, power 6 with gamma 4 DF-GAN's MA-GP."""

    def __init__(self, names: list[str], gamma: float, power: float = 2.0):
        super().__init__()
        self.names, self.gamma, self.power = names, gamma, power

    def input_grad(self) -> list[str]:
        return self.names

    def run(self, ctx: StepContext) -> torch.Tensor:
        real = one(ctx.args["input"])
        xs = [ctx.student[n] for n in self.names]
        grads = torch.autograd.grad(real.sum(), xs, create_graph=True)
        sq = sum(gr.flatten(1).pow(2).sum(1) for gr in grads)  # B
        return self.gamma / 2 * sq.pow(self.power / 2).mean()


class DiffusionEps(ObjectiveModule):
    """DDPM epsilon-prediction. `corrupt` draws t ~ U{0..T-1} and eps ~ N(0, I), replaces x_0 by
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, writes t into the timestep input, and drops the condition of
    a `drop_prob` fraction of examples (classifier-free guidance: ids -> null token, floats -> 0).
    Loss: mean (eps_pred - eps)^2, or with `target` "x0" mean (x0_pred - x_0)^2."""

    def __init__(
        self,
        image: str,
        timestep: str,
        schedule: str,
        steps: int,
        beta_start: float,
        beta_end: float,
        condition: dict[str, float],
        drop_prob: float,
        target: str = "eps",
    ):
        super().__init__()
        self.image, self.timestep, self.steps, self.target = image, timestep, steps, target
        self.alpha_bar = alphas_cumprod(schedule, steps, beta_start, beta_end)  # T (CPU: the
        # batch is corrupted on the CPU, before it moves to the device)
        self.condition, self.drop_prob = condition, drop_prob
        """Graph inputs of the condition -> the value a dropped example gets (null token id, 0 mask, 0.0)."""

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        x0 = batch.inputs[self.image]  # B,...
        b = x0.shape[0]
        t = torch.randint(0, self.steps, (b,), generator=g)  # B
        eps = torch.randn(x0.shape, generator=g)
        ab = self.alpha_bar[t].view(b, *[1] * (x0.dim() - 1))
        batch.inputs[self.image] = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        slot = batch.inputs[self.timestep]  # B (scalar) or B,1
        batch.inputs[self.timestep] = t.view(b, *[1] * (slot.dim() - 1)).to(slot.dtype).expand_as(slot).clone()
        if self.condition:
            drop = bernoulli((b,), self.drop_prob, g)
            for name, fill in self.condition.items():
                x = batch.inputs[name]
                rows = drop.view(b, *[1] * (x.dim() - 1))
                batch.inputs[name] = torch.where(rows, torch.full_like(x, fill), x)
        return {"noise": eps, "x0": x0, "timestep": t}

    def forward(self, args, targets):
        return F.mse_loss(one(args["input"]), targets["noise" if self.target == "eps" else "x0"])
