"""Pure functions on arrays: quality, diversity and memorisation."""

from .features import class_balance, frechet_feature_distance, load_shipped_feature_net
from .frechet import frechet_distance, frechet_distance_stats, frechet_terms, gaussian_stats
from .inception import inception_features, inception_fid
from .kid import kid
from .memorisation import copy_fraction, nearest_distances
from .mmd import median_distance, mmd
from .modes import mode_stats
from .prdc import prdc
from .sliced_wasserstein import sliced_wasserstein

__all__ = ["class_balance", "copy_fraction", "frechet_distance", "frechet_distance_stats", "frechet_feature_distance",
           "frechet_terms", "gaussian_stats", "inception_features", "inception_fid", "kid", "load_shipped_feature_net",
           "median_distance", "mmd", "mode_stats", "nearest_distances", "prdc", "sliced_wasserstein"]
