"""Trainium2 numbers the roofline model assumes, and the two instance presets.

Every figure is an input assumption, not a measurement: HBM bandwidth and capacity are AWS's
published per-chip figures split evenly over the chip's physical NeuronCore-v3s; the collective
figures are rough planning values. A logical core (LNC=2) is two physical cores and gets two
shares of HBM, bandwidth and compute. One TP rank runs on one logical core.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedConfigError

GIB = 2 ** 30


@dataclass(frozen=True)
class HardwareSpec:
    """One instance type, described per chip; ``rank_*`` properties give one TP rank's share."""

    name: str
    chips: int
    physical_cores_per_chip: int = 8
    lnc: int = 2
    hbm_bytes_per_chip: float = 96 * GIB
    hbm_bandwidth_per_chip: float = 2.9e12  # bytes/s
    bf16_flops_per_physical_core: float = 79e12  # dense, per second
    allreduce_latency_in_chip_s: float = 10e-6  # assumed fixed cost of one small all-reduce in a chip
    allreduce_latency_across_chips_s: float = 20e-6  # assumed, when the TP group spans chips
    collective_bandwidth: float = 100e9  # assumed bytes/s per rank for the bandwidth term of a ring all-reduce

    @property
    def logical_cores_per_chip(self) -> int:
        return self.physical_cores_per_chip // self.lnc

    @property
    def logical_cores(self) -> int:
        return self.chips * self.logical_cores_per_chip

    @property
    def rank_hbm_bytes(self) -> float:
        return self.hbm_bytes_per_chip / self.physical_cores_per_chip * self.lnc

    @property
    def rank_hbm_bandwidth(self) -> float:
        return self.hbm_bandwidth_per_chip / self.physical_cores_per_chip * self.lnc

    @property
    def rank_flops(self) -> float:
        return self.bf16_flops_per_physical_core * self.lnc

    def allreduce_latency(self, tp: int) -> float:
        if tp <= self.logical_cores_per_chip:
            return self.allreduce_latency_in_chip_s
        return self.allreduce_latency_across_chips_s

    def check_tp(self, tp: int) -> None:
        if tp < 1 or tp > self.logical_cores:
            raise UnsupportedConfigError(
                f"TP {tp} does not fit {self.name}: it has {self.logical_cores} logical cores at LNC {self.lnc}; "
                f"choose TP between 1 and {self.logical_cores}"
            )

    def describe(self) -> str:
        return (f"{self.name}: {self.chips} chip(s) x {self.physical_cores_per_chip} NeuronCore-v3, LNC {self.lnc} -> "
                f"{self.logical_cores} logical cores; per rank {self.rank_hbm_bytes / GIB:.1f} GiB HBM, "
                f"{self.rank_hbm_bandwidth / 1e9:.0f} GB/s, {self.rank_flops / 1e12:.0f} TFLOPS bf16")

    def assumptions(self) -> list[str]:
        return [
            f"HBM {self.hbm_bandwidth_per_chip / 1e12:.1f} TB/s and {self.hbm_bytes_per_chip / GIB:.0f} GiB per chip, "
            f"shared evenly by {self.physical_cores_per_chip} physical cores; LNC {self.lnc} = {self.lnc} physical "
            "cores per rank",
            f"bf16 peak {self.bf16_flops_per_physical_core / 1e12:.0f} TFLOPS per physical core (dense)",
            f"all-reduce = {self.allreduce_latency_in_chip_s * 1e6:.0f} us in a chip / "
            f"{self.allreduce_latency_across_chips_s * 1e6:.0f} us across chips + 2(R-1)/R x bytes at "
            f"{self.collective_bandwidth / 1e9:.0f} GB/s per rank; collectives do not overlap compute",
        ]


TRN2_3XLARGE = HardwareSpec(name="trn2.3xlarge", chips=1)
TRN2_48XLARGE = HardwareSpec(name="trn2.48xlarge", chips=16)

PRESETS = {
    "trn2.3xlarge": (TRN2_3XLARGE, 4),
    "trn2.48xlarge": (TRN2_48XLARGE, 8),
}
"""Instance name -> (hardware, default TP degree)."""
