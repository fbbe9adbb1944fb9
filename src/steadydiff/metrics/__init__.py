"""Pure functions on arrays: quality, diversity and memorisation."""

from .frechet import frechet_distance, frechet_distance_stats, gaussian_stats
from .memorisation import copy_fraction, nearest_distances
from .modes import mode_stats

__all__ = ["copy_fraction", "frechet_distance", "frechet_distance_stats", "gaussian_stats", "mode_stats",
           "nearest_distances"]
