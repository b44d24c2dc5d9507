"""CycleGAN training: MxIF (all stains) <-> real H&E, unpaired.

One step (Zhu et al. 2017, least-squares GAN):
- generators G: MxIF -> H&E and F: H&E -> MxIF minimise
  LSGAN(D_he(G(x)), 1) + LSGAN(D_mxif(F(y)), 1)
  + lambda_cycle * (|F(G(x)) - x| + |G(F(y)) - y|)
  + lambda_cycle * lambda_identity * |G(P(y)) - y|
  + lambda_nucleus * nucleus_preservation_loss(G(x), x_nuclear);
- discriminators minimise 0.5 * (LSGAN(D(real), 1) + LSGAN(D(pool(fake)), 0)), fakes drawn from a
  50-image history pool;
- Adam(lr 2e-4, betas 0.5, 0.999) for both, constant rate then optionally linear decay to 0.

Identity term, adapted: the original asks G(y) = y for y already in G's output domain, which
needs equal plane counts. MxIF has 27 stains and H&E 3, so a real H&E image y is first lifted
into stain space by the fixed projection P (optics.he_to_stain_space: nuclear stain <-
hematoxylin, other stains <- eosin); G must then return y unchanged. Only this H&E -> H&E path is
used: the mirror MxIF -> MxIF path would squeeze 27 stains through 3 planes and could not be
satisfied, so it would fight the cycle loss.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from pipelines.errors import ConfigurationError
from pipelines.vhe.cyclegan.model import Architecture, CycleGanNetworks
from pipelines.vhe.cyclegan.optics import he_to_stain_space, nucleus_preservation_loss


@dataclass(frozen=True)
class TrainParams:
    steps: int = 200
    crop_px: int = 64
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # relative to lambda_cycle, as in the CycleGAN code
    lambda_nucleus: float = 1.0
    pool_size: int = 50
    lr_decay_start: int | None = None  # step from which lr falls linearly to 0 at `steps`
    norm_low_percentile: float = 1.0  # per-slide percentiles mapped to -1 and +1
    norm_high_percentile: float = 99.9
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    architecture: dict[str, int]
    train: TrainParams
    cpu_threads: int = 0  # 0: torch's default; tiny networks run faster on one thread


#: A tiny CPU configuration (seconds to a minute) and the CycleGAN paper's configuration.
PROFILES: dict[str, Profile] = {
    "demo": Profile(
        {"ngf": 8, "ndf": 8, "n_blocks": 3, "n_disc_layers": 3},
        TrainParams(steps=150, crop_px=64, batch_size=1),
        cpu_threads=1,
    ),
    "paper": Profile(
        {"ngf": 64, "ndf": 64, "n_blocks": 9, "n_disc_layers": 3},
        TrainParams(steps=100_000, crop_px=224, batch_size=1, lr_decay_start=50_000),
    ),
}


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): with probability 1/2 the
    discriminator sees an older fake instead of the newest, which damps oscillation."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self._random = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self._random.random() < 0.5:
                k = self._random.randrange(self.size)
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, dim=0)


def _lsgan(prediction: torch.Tensor, target_real: bool) -> torch.Tensor:
    target = torch.ones_like(prediction) if target_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class CycleGanTrainer:
    """Networks, optimisers, pools and the step counter; `train_step` does one update of each."""

    def __init__(
        self,
        networks: CycleGanNetworks,
        architecture: Architecture,
        params: TrainParams,
        stains: tuple[str, ...],
        nuclear_stain: str,
        device: torch.device,
    ) -> None:
        if architecture.n_stains != len(stains):
            raise ConfigurationError(
                f"Architecture has {architecture.n_stains} input stains, data has {len(stains)}."
            )
        if (params.lambda_nucleus > 0 or params.lambda_identity > 0) and (
            nuclear_stain not in stains
        ):
            raise ConfigurationError(
                f"The nucleus-preserving and identity terms need the nuclear stain "
                f"{nuclear_stain!r}, which the training stains lack; set lambda_nucleus=0 and "
                "lambda_identity=0 or add the stain."
            )
        if params.crop_px % 4:
            raise ConfigurationError(f"crop_px must be a multiple of 4, got {params.crop_px}.")
        self.nets = networks.to(device)
        self.architecture, self.params, self.stains = architecture, params, stains
        self.nuclear_index = stains.index(nuclear_stain) if nuclear_stain in stains else -1
        self.device = device
        g, f = self.nets.generator_mxif_to_he, self.nets.generator_he_to_mxif
        d_he, d_mx = self.nets.discriminator_he, self.nets.discriminator_mxif
        betas = (params.beta1, params.beta2)
        self.opt_g = torch.optim.Adam([*g.parameters(), *f.parameters()], lr=params.lr, betas=betas)
        self.opt_d = torch.optim.Adam(
            [*d_he.parameters(), *d_mx.parameters()], lr=params.lr, betas=betas
        )
        self.pool_he = ImagePool(params.pool_size, seed=params.seed)
        self.pool_mxif = ImagePool(params.pool_size, seed=params.seed + 1)
        self.step = 0

    def learning_rate(self, step: int) -> float:
        p = self.params
        if p.lr_decay_start is None or step < p.lr_decay_start:
            return p.lr
        remaining = max(p.steps - step, 0) / max(p.steps - p.lr_decay_start, 1)
        return p.lr * remaining

    def train_step(self, mxif: torch.Tensor, he: torch.Tensor) -> dict[str, float]:
        """One generator and one discriminator update; returns the step's losses."""
        p, nets = self.params, self.nets
        g, f = nets.generator_mxif_to_he, nets.generator_he_to_mxif
        d_he, d_mx = nets.discriminator_he, nets.discriminator_mxif
        lr = self.learning_rate(self.step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        real_mx, real_he = mxif.to(self.device), he.to(self.device)

        _set_requires_grad(d_he, False)
        _set_requires_grad(d_mx, False)
        self.opt_g.zero_grad(set_to_none=True)
        fake_he = g(real_mx)
        fake_mx = f(real_he)
        loss_gan = _lsgan(d_he(fake_he), True) + _lsgan(d_mx(fake_mx), True)
        cycle_mx = F.l1_loss(f(fake_he), real_mx)
        cycle_he = F.l1_loss(g(fake_mx), real_he)
        loss = loss_gan + p.lambda_cycle * (cycle_mx + cycle_he)
        identity = torch.zeros((), device=self.device)
        if p.lambda_identity > 0:
            lifted = he_to_stain_space(real_he, len(self.stains), self.nuclear_index)
            identity = F.l1_loss(g(lifted), real_he)
            loss = loss + p.lambda_cycle * p.lambda_identity * identity
        nucleus = torch.zeros((), device=self.device)
        if p.lambda_nucleus > 0:
            nuclear = real_mx[:, self.nuclear_index : self.nuclear_index + 1]
            nucleus = nucleus_preservation_loss(fake_he, nuclear)
            loss = loss + p.lambda_nucleus * nucleus
        loss.backward()
        self.opt_g.step()

        _set_requires_grad(d_he, True)
        _set_requires_grad(d_mx, True)
        self.opt_d.zero_grad(set_to_none=True)
        pooled_he = self.pool_he.query(fake_he.detach())
        pooled_mx = self.pool_mxif.query(fake_mx.detach())
        loss_d_he = 0.5 * (_lsgan(d_he(real_he), True) + _lsgan(d_he(pooled_he), False))
        loss_d_mx = 0.5 * (_lsgan(d_mx(real_mx), True) + _lsgan(d_mx(pooled_mx), False))
        (loss_d_he + loss_d_mx).backward()
        self.opt_d.step()
        self.step += 1
        return {
            "generator_gan": float(loss_gan.detach()),
            "cycle_mxif": float(cycle_mx.detach()),
            "cycle_he": float(cycle_he.detach()),
            "identity_he": float(identity.detach()),
            "nucleus": float(nucleus.detach()),
            "generator_total": float(loss.detach()),
            "discriminator_he": float(loss_d_he.detach()),
            "discriminator_mxif": float(loss_d_mx.detach()),
            "lr": lr,
        }

    def state_dicts(self) -> dict[str, dict[str, Any]]:
        """Everything needed to resume: four networks and both optimisers."""
        states = {name: m.state_dict() for name, m in self.nets.modules().items()}
        states["optimizer_generators"] = self.opt_g.state_dict()
        states["optimizer_discriminators"] = self.opt_d.state_dict()
        return states

    def load_state_dicts(self, states: dict[str, dict[str, Any]], step: int) -> None:
        for name, module in self.nets.modules().items():
            module.load_state_dict(states[name])
        self.opt_g.load_state_dict(states["optimizer_generators"])
        self.opt_d.load_state_dict(states["optimizer_discriminators"])
        self.step = int(step)


class Sampler(Protocol):
    def sample(self, batch_size: int) -> torch.Tensor: ...


@dataclass
class TrainingLog:
    steps_run: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def mean_of_last(self, n: int = 20) -> dict[str, float]:
        tail = self.history[-n:]
        if not tail:
            return {}
        return {k: sum(h[k] for h in tail) / len(tail) for k in tail[0]}


def train(
    trainer: CycleGanTrainer,
    mxif: Sampler,
    he: Sampler,
    *,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[CycleGanTrainer, TrainingLog], None] | None = None,
) -> TrainingLog:
    """Run steps until `trainer.params.steps`; `on_checkpoint` is called every
    `checkpoint_every` steps and at the end (the caller writes the checkpoint)."""
    log = TrainingLog()
    start = time.perf_counter()
    torch.manual_seed(trainer.params.seed + trainer.step)
    for module in trainer.nets.modules().values():
        module.train()
    while trainer.step < trainer.params.steps:
        batch = trainer.params.batch_size
        losses = trainer.train_step(mxif.sample(batch), he.sample(batch))
        log.history.append({"step": float(trainer.step), **losses})
        log.steps_run += 1
        log.seconds = time.perf_counter() - start
        if on_checkpoint and checkpoint_every and trainer.step % checkpoint_every == 0:
            on_checkpoint(trainer, log)
    log.seconds = time.perf_counter() - start
    pending = not checkpoint_every or trainer.step % checkpoint_every
    if on_checkpoint and log.steps_run and pending:
        on_checkpoint(trainer, log)
    return log
