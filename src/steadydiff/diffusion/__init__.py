"""σ-space diffusion core: preconditioning, training-noise distributions, losses, VP schedule maps."""

from .config import DiffusionConfig
from .loss import DenoisingLoss, loss_weight
from .noise import sample_sigma
from .precond import Denoiser, Scalings, scalings
from .schedules import vp_sigma, vp_t

__all__ = ["DenoisingLoss", "Denoiser", "DiffusionConfig", "Scalings", "loss_weight", "sample_sigma",
           "scalings", "vp_sigma", "vp_t"]
