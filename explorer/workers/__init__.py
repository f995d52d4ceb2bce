"""The processes that do heavy work away from the caller, so that a hang or a crash in TVM costs a
killed child, never the caller.

- :mod:`.pool`: child interpreters on this machine (:class:`WorkerPool`): workload timing,
  background measurement, tuning builds;
- :mod:`.rpc`: TVM's RPC tracker and servers (``explorer rpc up``) and the ``HOST:PORT`` parser of
  every command that talks to one.

Both ``measure/`` and ``deploy/`` use them, which is why they sit below both rather than in either.
"""

from .pool import WorkerError, WorkerPool, WorkerTimeout
from .rpc import RPCCluster, parse_endpoint

__all__ = ["WorkerPool", "WorkerError", "WorkerTimeout", "RPCCluster", "parse_endpoint"]
