"""The ``tvm-gpu`` backend: an NVIDIA GPU through TVM's CUDA code generation, priced by measurements.

The same measured cost model, compile and measure paths as :mod:`explorer.backends.tvm_cpu`; the TVM
target is CUDA (host code for the host CPU). Without a GPU, compile still emits the CUDA module, and
measuring says there is no device. Tuning is for CPUs only so far.
"""

from __future__ import annotations

from .base import BACKENDS
from .tvm_cpu import TVMBackend

__all__ = ["TVMGPUBackend"]


@BACKENDS.register("tvm-gpu")
class TVMGPUBackend(TVMBackend):
    device_type = "cuda"

    def tvm_target(self, num_cores=None, arch=None):
        from ..deploy.tvm_build import cuda_target

        return cuda_target(arch or self.target.options.get("arch"))
