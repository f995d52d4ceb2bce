"""Runs: a finished search's folder and its record in the store.

- :mod:`.folder`: the run folder as ``explorer search`` writes it, read into a :class:`RunData`;
- :mod:`.summary`: its ``summary.json`` typed, :class:`RunSummary` (written and read back);
- :mod:`.plot`: the folder's ``search.png``, the history of the search;
- :mod:`.store`: the runs recorded in the measurement store (``explorer runs list|show|rm``).

The folder itself is written by :func:`explorer.api.run_search` (built in ``<out>.partial``, renamed
when complete, then recorded here).
"""

from .folder import RunData, load_run
from .plot import NothingToPlot, plot_history
from .store import find_run, register_run
from .summary import RunSummary, Verdict

__all__ = ["RunData", "load_run", "RunSummary", "Verdict", "plot_history", "NothingToPlot", "register_run", "find_run"]
