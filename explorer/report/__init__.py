"""The self-contained HTML report of runs and explorations, for people (``explorer report``).

- :mod:`.write`: reads run and exploration folders and writes the page;
- :mod:`.page`: renders the page, every figure an embedded PNG.

A run folder's own ``search.png`` is drawn when the run is written (:mod:`explorer.runs.plot`).
"""

from .write import write_report

__all__ = ["write_report"]
