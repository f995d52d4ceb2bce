"""Accelerator parameters derived from a hardware configuration (vta_config.json field names)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["VTAParams", "vta_json", "from_vta_json"]


def vta_json(config) -> dict:
    """A configuration as ``vta_config.json`` fields (``LOG_BLOCK`` too where IN equals OUT)."""
    d = config.as_dict()
    if "LOG_BLOCK_IN" in d and d.get("LOG_BLOCK_IN") == d.get("LOG_BLOCK_OUT"):
        d["LOG_BLOCK"] = d["LOG_BLOCK_IN"]  # the older single-block field, for tools that read it
    return d


def from_vta_json(d: dict, space):
    """Parse ``vta_config.json`` fields against a hardware space (``LOG_BLOCK`` sets IN and OUT)."""
    from ..space.hardware import HWConfig

    d = dict(d)
    if "LOG_BLOCK" in d:
        blk = d.pop("LOG_BLOCK")
        d.setdefault("LOG_BLOCK_IN", blk)
        d.setdefault("LOG_BLOCK_OUT", blk)
    return HWConfig.from_dict(d, space)


@dataclass(frozen=True)
class VTAParams:
    """Sizes in elements and bytes of one VTA-style core.

    A buffer *element* is what one instruction addresses: an input element is a BATCH x BLOCK_IN
    vector, a weight element a BLOCK_OUT x BLOCK_IN matrix, an accumulator element a BATCH x
    BLOCK_OUT vector of 32-bit values (VTA Hardware Guide, on-chip buffers).
    """

    batch: int
    block_in: int
    block_out: int
    inp_bits: int
    wgt_bits: int
    inp_buf_bytes: int
    wgt_buf_bytes: int
    acc_buf_bytes: int
    uop_buf_bytes: int
    freq_mhz: float
    dram_gbps: float
    acc_bits: int = 32

    @classmethod
    def from_config(cls, cfg: dict) -> "VTAParams":
        try:
            return cls(
                batch=2 ** int(cfg["LOG_BATCH"]),
                block_in=2 ** int(cfg.get("LOG_BLOCK_IN", cfg.get("LOG_BLOCK"))),
                block_out=2 ** int(cfg.get("LOG_BLOCK_OUT", cfg.get("LOG_BLOCK"))),
                inp_bits=2 ** int(cfg["LOG_INP_WIDTH"]),
                wgt_bits=2 ** int(cfg["LOG_WGT_WIDTH"]),
                inp_buf_bytes=2 ** int(cfg["LOG_INP_BUFF_SIZE"]),
                wgt_buf_bytes=2 ** int(cfg["LOG_WGT_BUFF_SIZE"]),
                acc_buf_bytes=2 ** int(cfg["LOG_ACC_BUFF_SIZE"]),
                uop_buf_bytes=2 ** int(cfg["LOG_UOP_BUFF_SIZE"]),
                freq_mhz=float(cfg.get("HW_FREQ_MHZ", 100)),
                dram_gbps=float(cfg.get("DRAM_BW_GBPS", 2.0)),
                acc_bits=2 ** int(cfg.get("LOG_ACC_WIDTH", 5)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"hardware config: missing or bad field ({type(e).__name__}: {e})") from None

    @property
    def inp_elem_bytes(self) -> int:
        return self.batch * self.block_in * self.inp_bits // 8

    @property
    def wgt_elem_bytes(self) -> int:
        return self.block_out * self.block_in * self.wgt_bits // 8

    @property
    def acc_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.acc_bits // 8

    @property
    def out_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.inp_bits // 8

    @property
    def bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e9 / (self.freq_mhz * 1e6)
