"""Small autoencoders for 8x8 .. 32x32 images: deterministic AE, stochastic AE, VAE.

The three share one encoder body and one decoder and differ only in what the
encoder outputs and what the loss adds:

* ``AE``: z = mu_phi(x); loss = squared error (notes eq. (5) with q a point mass).
* ``StochasticAE``: q_phi(z|x) = N(mu, diag sigma^2) (eq. (3)), z sampled with the
  reparameterization trick (eq. (6)); loss = eq. (7). Nothing pulls q towards any
  prior, so sigma is free to shrink: it is a VAE without its KL term.
* ``VAE``: the same encoder and decoder, loss = eq. (8) (reconstruction + KL).

The losses come twice: on tensors (``reconstruction_loss``, ``negative_elbo``), and in
the signature ``train.train`` takes, ``loss_fn(model, x) -> (loss, parts)``
(``ae_loss``, ``stochastic_ae_loss``, ``vae_loss``), so a chapter passes them straight
to the training loop. After them come the measurements chapter 2 makes on a trained
VAE: the ELBO per image, the best per-image q (for the amortization gap), log p(x) by
importance sampling and by grid quadrature, the aggregate posterior, and the latents
in use.
"""

import math

import torch
import torch.nn as nn

from . import checks
from .gaussians import DiagonalGaussian, gaussian_nll, kl_standard_normal_elementwise


def mlp(sizes):
    """Linear layers with SiLU between them (none after the last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    """x_hat_theta(z): the mean of the Gaussian decoder p_theta(x|z) of eq. (4).

    An MLP from the code z (B, latent_dim) to images in [-1, 1] (B, C, H, W).
    """

    def __init__(self, image_shape, latent_dim, hidden):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([latent_dim, hidden, hidden, math.prod(image_shape)])

    def forward(self, z):
        x_hat = torch.tanh(self.net(z))  # (B, C*H*W)
        return x_hat.view(z.shape[0], *self.image_shape)  # (B, C, H, W)


class AE(nn.Module):
    """Deterministic autoencoder: z = mu_phi(x), x_hat = x_hat_theta(z)."""

    code_size = 1  # the encoder outputs latent_dim numbers per image: z itself

    def __init__(self, image_shape=(1, 8, 8), latent_dim=2, hidden=256):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        n_out = self.code_size * latent_dim
        self.encoder = mlp([math.prod(image_shape), hidden, hidden, n_out])
        self.decoder = MLPDecoder(image_shape, latent_dim, hidden)

    def encode(self, x):
        checks.tensor(x, "x", shape=("B", *self.image_shape))
        return self.encoder(x.flatten(1))  # (B, latent_dim)

    def decode(self, z):
        checks.tensor(z, "z", shape=("B", self.latent_dim))
        return self.decoder(z)

    def forward(self, x):
        return self.decoder(self.encode(x))


class StochasticAE(AE):
    """Gaussian encoder q_phi(z|x) (eq. (3)) sampled by reparameterization (eq. (6)).

    No KL term: what it is trained with is eq. (7), ``stochastic_ae_loss``.
    """

    code_size = 2  # a mean and a log-variance per latent coordinate

    def encode(self, x):
        """q_phi(z|x) as a DiagonalGaussian (mu_phi(x), log sigma_phi(x)^2)."""
        checks.tensor(x, "x", shape=("B", *self.image_shape))
        mean, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)  # (B, D) each
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def forward(self, x, generator=None):
        """Returns (x_hat, q): the reconstruction from one sample z ~ q(z|x), and q."""
        q = self.encode(x)
        return self.decoder(q.sample(generator=generator)), q


class VAE(StochasticAE):
    """The networks of ``StochasticAE``; what makes it a VAE is ``vae_loss``'s KL."""


# The losses on tensors: what the notes write down.


def reconstruction_loss(x, x_hat, sigma=1.0):
    """Gaussian decoder NLL of eq. (5)/(7), averaged over the batch: (loss, parts).

    ``parts["mse"]`` is the per-image squared error ||x - x_hat||^2, the quantity the
    notes minimise; the NLL adds the constant (D/2) log(2 pi sigma^2) and divides by
    2 sigma^2.
    """
    checks.tensor(x_hat, "x_hat", shape=tuple(x.shape))
    checks.number(sigma, "sigma", low=0, low_open=True)
    nll = gaussian_nll(x, x_hat, 2.0 * math.log(sigma)).mean()
    mse = (x - x_hat).pow(2).flatten(1).sum(1).mean()
    return nll, {"nll": nll.detach(), "mse": mse.detach()}


def negative_elbo(x, x_hat, posterior, beta=1.0, sigma=1.0):
    """Negative ELBO of eq. (8), averaged over the batch: (loss, parts).

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)), with the Gaussian decoder of
    eq. (4) and one reparameterized sample. beta=1 is the true ELBO; the notes' eq. (10)
    drops the 1/(2 sigma^2), which amounts to another beta (see chapter 2).
    """
    checks.instance(posterior, "posterior", DiagonalGaussian)
    checks.number(beta, "beta", low=0)
    rec, parts = reconstruction_loss(x, x_hat, sigma)
    kl = posterior.kl().mean()
    loss = rec + beta * kl
    return loss, {
        "loss": loss.detach(),
        "rec": rec.detach(),
        "kl": kl.detach(),
        "mse": parts["mse"],
    }


# The same losses in the training loop's signature, loss_fn(model, x) -> (loss, parts):
#     train.train(model, functools.partial(vae_loss, beta=4.0), images, ...)


def ae_loss(model, x, sigma=1.0):
    """Eq. (5) for an ``AE``: the decoder NLL of x_hat = x_hat_theta(mu_phi(x))."""
    return reconstruction_loss(x, model(x), sigma)


def stochastic_ae_loss(model, x, sigma=1.0):
    """Eq. (7) for a ``StochasticAE``: the decoder NLL at one z ~ q(z|x), no KL.

    ``parts["encoder_sigma"]`` is the encoder's mean standard deviation, the number that
    shrinks when nothing holds q near the prior.
    """
    x_hat, q = model(x)
    loss, parts = reconstruction_loss(x, x_hat, sigma)
    return loss, {**parts, "encoder_sigma": q.std.mean().detach()}


def vae_loss(model, x, beta=1.0, sigma=1.0):
    """Eq. (8) for a ``VAE``: ``negative_elbo`` at one z ~ q(z|x); beta weighs the KL.

    parts: loss, rec, kl, mse and encoder_sigma (as in ``stochastic_ae_loss``).
    """
    x_hat, q = model(x)
    loss, parts = negative_elbo(x, x_hat, q, beta=beta, sigma=sigma)
    return loss, {**parts, "encoder_sigma": q.std.mean().detach()}


# What chapter 2 measures on a trained model: the ELBO per image, log p(x) by
# importance sampling (so the gap can be seen), the aggregate posterior, and which
# latents are in use.
# Each checks its input once; the loops inside call the networks directly.

_GAUSSIAN_ENCODER = "a VAE (or StochasticAE) with a Gaussian encoder"


def _q_of(model, x, q, what):
    """q(z|x): the encoder's when ``q`` is None, else ``q`` (one row per image), checked."""
    if q is None:
        return model.encode(x)  # checks x
    checks.tensor(x, "x", shape=("B", *model.image_shape))
    checks.instance(q, what, DiagonalGaussian)
    checks.tensor(q.mean, f"{what}.mean", shape=(x.shape[0], model.latent_dim))
    return q


@torch.no_grad()
def elbo_per_image(model, x, sigma=1.0, n_samples=1, generator=None, posterior=None):
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)) in nats, one per image: (B,).

    Minus the loss of notes eq. (8) (with its constants), the expectation averaged over
    ``n_samples`` reparameterized draws and the KL in closed form (eq. (9)).
    posterior: the q to evaluate (a DiagonalGaussian, one row per image); None means the
    model's encoder, q_phi(z|x).
    """
    checks.instance(model, "model", StochasticAE, _GAUSSIAN_ENCODER)
    checks.number(sigma, "sigma", low=0, low_open=True)
    q = _q_of(model, x, posterior, "posterior")
    log_lik = torch.stack(
        [
            -gaussian_nll(
                x, model.decoder(q.sample(generator=generator)), 2 * math.log(sigma)
            )
            for _ in range(n_samples)
        ]
    )  # (S, B)
    return log_lik.mean(0) - q.kl()


def fit_posterior(model, x, sigma=1.0, steps=200, lr=0.05, n_samples=8, generator=None):
    """The best diagonal Gaussian q(z|x) for each image, by gradient ascent on its ELBO.

    Starts at the encoder's q_phi(z|x) and maximizes ELBO(q) (``n_samples``
    reparameterized draws per step) over each image's own mean and log-variance, with
    the decoder fixed. ELBO(fitted q) - ELBO(q_phi) is the *amortization gap* the shared
    encoder leaves, and log p(x) - ELBO(fitted q) the *approximation gap* of the
    diagonal family (Cremer et al. 2018, "Inference suboptimality in VAEs"; notes
    eq. (8)). Returns a DiagonalGaussian.
    """
    checks.instance(model, "model", StochasticAE, _GAUSSIAN_ENCODER)
    checks.number(sigma, "sigma", low=0, low_open=True)
    with torch.no_grad():
        q = model.encode(x)
    mean = q.mean.detach().clone().requires_grad_()
    logvar = q.logvar.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([mean, logvar], lr=lr)
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        for _ in range(steps):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(
                n_samples,
                *mean.shape,
                generator=generator,
                dtype=mean.dtype,
                device=mean.device,
            )
            z = mean + std * eps  # (S, B, d)
            x_hat = model.decoder(z.view(-1, mean.shape[1]))  # (S*B, C, H, W)
            x_s = x.expand(n_samples, *x.shape).reshape(x_hat.shape)
            log_lik = (
                -gaussian_nll(x_s, x_hat, 2 * math.log(sigma))
                .view(n_samples, -1)
                .mean(0)
            )  # (B,)
            kl = kl_standard_normal_elementwise(mean, logvar).sum(1)  # (B,), eq. (9)
            loss = -(log_lik - kl).sum()  # minus the ELBO of every image
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p, flag in zip(model.parameters(), frozen):
            p.requires_grad_(flag)
    return DiagonalGaussian(mean.detach(), logvar.detach())


@torch.no_grad()
def grid_log_likelihood(model, x, sigma, half_width=6.0, n=481, chunk=64):
    """log p(x) = log int p(x|z) N(z; 0, I) dz by a Riemann sum on a 2-D grid: (B,).

    A quadrature of eq. (2) that uses no importance weights and no encoder, to check
    the sampling estimates with: the square [-half_width, half_width]^2 is cut into an
    n x n grid, decoded once, and every image's integrand summed over it. The grid must
    be fine against the posterior's width (spacing 2 half_width / (n - 1)) and wide
    enough to hold its mass. Only for 2-D latents; ``chunk`` images are compared with
    the grid at once.
    """
    checks.instance(model, "model", StochasticAE, _GAUSSIAN_ENCODER)
    checks.number(sigma, "sigma", low=0, low_open=True)
    checks.tensor(x, "x", shape=("B", *model.image_shape))
    if model.latent_dim != 2:
        raise ValueError(
            f"grid integration needs a 2-D latent, the model has {model.latent_dim}"
        )
    axis = torch.linspace(-half_width, half_width, n, dtype=x.dtype, device=x.device)
    z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)
    z = z.view(-1, 2)  # (n*n, 2)
    x_hat = model.decoder(z).flatten(1)  # (n*n, D)
    log_prior = -gaussian_nll(z, torch.zeros_like(z), 0.0)  # (n*n,)
    cell = 2 * math.log(2 * half_width / (n - 1))  # log of one cell's area
    log_norm = -0.5 * x_hat.shape[1] * math.log(2 * math.pi * sigma**2)
    out = []
    for xb in x.flatten(1).split(chunk):  # (b, D)
        squared = torch.cdist(xb, x_hat).pow(2)  # (b, n*n): ||x - x_hat(z)||^2
        log_lik = log_norm - squared / (2 * sigma**2)
        out.append(torch.logsumexp(log_lik + log_prior, dim=1) + cell)
    return torch.cat(out)


@torch.no_grad()
def importance_log_likelihood(
    model, x, sigma=1.0, n_samples=1000, generator=None, chunk=256, proposal=None
):
    """log p(x) of eq. (2) by importance sampling, the encoder as proposal: (B,).

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)
    (Burda et al. 2016). It is a lower bound in expectation too, but one that tightens
    as K grows (K = 1 is the ELBO), and with a 2-D latent a few hundred samples are
    enough to see the ELBO's gap. ``chunk`` bounds how many samples per image are
    decoded at once. proposal: another DiagonalGaussian per image (e.g.
    ``fit_posterior``'s) in place of the encoder; any proposal gives the same log p(x)
    in the limit, which is what makes the estimate checkable.
    """
    checks.instance(model, "model", StochasticAE, _GAUSSIAN_ENCODER)
    checks.number(sigma, "sigma", low=0, low_open=True)
    checks.number(n_samples, "n_samples", low=1, integer=True)
    q = _q_of(model, x, proposal, "proposal")
    batch = x.shape[0]
    log_w = []
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        mean = q.mean.expand(k, *q.mean.shape).reshape(k * batch, -1)  # (k*B, d)
        logvar = q.logvar.expand(k, *q.logvar.shape).reshape(k * batch, -1)
        q_k = DiagonalGaussian(mean, logvar)
        z = q_k.sample(generator=generator)  # (k*B, d)
        x_k = x.expand(k, *x.shape).reshape(k * batch, *x.shape[1:])  # (k*B, C, H, W)
        log_lik = -gaussian_nll(x_k, model.decoder(z), 2 * math.log(sigma))
        log_prior = -gaussian_nll(z, torch.zeros_like(z), 0.0)  # log N(z_k; 0, I)
        log_q = -q_k.nll(z)  # log q(z_k|x)
        log_w.append((log_lik + log_prior - log_q).view(k, batch))  # (k, B)
    log_w = torch.cat(log_w)  # (K, B)
    return torch.logsumexp(log_w, dim=0) - math.log(n_samples)


@torch.no_grad()
def aggregate_posterior(model, x, generator=None):
    """One code per image: z ~ q(z|x) for a VAE, z = mu(x) for an AE; (B, d).

    Over a data set these are samples of the aggregate posterior q(z) = E_x q(z|x), the
    distribution the decoder actually sees; a VAE's KL term pulls it towards the prior
    N(0, I).
    """
    code = model.encode(x)
    if isinstance(code, DiagonalGaussian):
        return code.sample(generator=generator)
    return code


@torch.no_grad()
def latent_usage(model, x, threshold=0.01):
    """Which latent coordinates a VAE uses, measured on images x: a dict of tensors.

    kl_per_dim (d,): the KL of eq. (9) per coordinate, averaged over x; a collapsed
        coordinate has q(z_i|x) = N(0, 1) for every x and carries ~0 nats.
    activity (d,): Var_x E_q[z_i], the spread of the encoder's means across images; a
        coordinate is "active" when it exceeds ``threshold`` (Burda et al. 2016 use
        0.01).
    active_units: how many are active.
    """
    checks.instance(model, "model", StochasticAE, _GAUSSIAN_ENCODER)
    q = model.encode(x)
    kl_per_dim = kl_standard_normal_elementwise(q.mean, q.logvar).mean(0)  # (d,)
    activity = q.mean.var(0)  # (d,)
    return {
        "kl_per_dim": kl_per_dim,
        "activity": activity,
        "active_units": int((activity > threshold).sum()),
    }
