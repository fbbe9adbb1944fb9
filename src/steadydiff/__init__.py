"""steadydiff: train diffusion models on your own data — stable by default, honest about quality.

    import steadydiff
    run = steadydiff.train({"train": {"steps": 2000}}, data="toy:grid25", out="runs/grid")
    model = steadydiff.load(run.dir)
    x = model.sample(1000, steps=18, sampler="heun", seed=0)
"""

from .api import Ensemble, Model, Run, load, train
from .config import RunConfig
from .errors import ConfigError, DataError, SteadydiffError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "Ensemble", "Model", "Run", "RunConfig", "SteadydiffError", "load", "train"]
