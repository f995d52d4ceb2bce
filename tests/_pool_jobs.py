"""Jobs for the worker-pool tests: a module with no heavy imports, so spawned workers start fast."""

import os


def square_or_die(x):
    if x == 3:
        os._exit(7)  # a worker that dies (killed, out of memory)
    return x * x
