"""simcne: t-SimCNE maps of image datasets (Böhm, Berens & Kobak, ICLR 2023).

>>> from simcne import TSimCNE
>>> Y = TSimCNE(total_epochs=[400, 25, 75]).fit_transform(images)  # doctest: +SKIP
"""

from ._version import __version__
from .augment import Augment
from .estimator import TSimCNE
from .metrics import knn_accuracy, map_shape, neighborhood_preservation, trustworthiness
from .train import TrainingDiverged

__all__ = ["Augment", "TSimCNE", "TrainingDiverged", "knn_accuracy", "map_shape",
           "neighborhood_preservation", "trustworthiness", "__version__"]
