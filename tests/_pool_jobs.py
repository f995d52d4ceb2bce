"""Jobs for the worker-pool tests: a module with no heavy imports, so spawned workers start fast."""

import os


def square_or_die(x):
    if x == 3:
        os._exit(7)  # a worker that dies (killed, out of memory)
    return x * x


def hold_on():
    """Leave a non-daemon thread running and return this worker's pid: a worker whose parent dies
    would stay alive for that thread even after its pipe closes."""
    import threading
    import time

    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
    return os.getpid()


def pool_then_wait():
    """In a parent process: start a pool, run :func:`hold_on`, print the worker's pid, then wait
    (to be killed)."""
    import sys
    import time

    from explorer.workers.pool import WorkerPool

    pool = WorkerPool(workers=1)
    print(pool.run(hold_on), flush=True)
    sys.stdout.close()
    time.sleep(3600)
