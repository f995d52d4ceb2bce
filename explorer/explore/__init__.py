"""Explorations: a grid of searches (targets x limits x seeds x methods) and its Pareto fronts.

- :mod:`.grid`: the grid, one job per search, ``exploration.json`` and ``explorer explore``;
- :mod:`.executors`: where the jobs run (a local process pool or a Ray cluster), behind one interface;
- :mod:`.pareto`: fronts and hypervolume of (accuracy, cost) points.
"""

from .grid import explore
from .pareto import front, hypervolume

__all__ = ["explore", "front", "hypervolume"]
