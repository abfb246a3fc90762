"""GPU helpers: the peak memory bandwidth of a device and the bytes a training step moves.

Framework-free: the worker passes in the device name and properties it reads from torch.
"""

from __future__ import annotations

from pathlib import Path
from shutil import which
from typing import Any

# Peak DRAM bandwidth in GB/s (vendor data sheets), by a substring of torch's device name; the
# first match wins, so more specific names come first.
PEAK_BANDWIDTH_GBPS = (
    ("GH200", 4000.0),
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5, "NVIDIA H100 80GB HBM3"
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40 GB, SXM4 or PCIe
    ("L40S", 864.0),
    ("L40", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("A10", 600.0),
    ("T4", 320.0),
    ("V100", 900.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
)

# Bytes per trainable fp32 scalar in one Adam step: the weight read in the forward pass and again
# for the input gradient, the gradient written, then Adam reads weight, gradient and both
# moments and writes weight and both moments.
BYTES_PER_TRAINABLE = 4 * (2 + 1 + 4 + 3)
# Each element of the looked-up embeddings: written by the lookup, read by the dense layer
# forward and for its weight gradient, its gradient written, then read by the scatter-add.
BYTES_PER_ACTIVATION = 4 * 5


def cuda_present() -> bool:
    """Whether an NVIDIA driver is installed (checked without importing a framework)."""
    return Path("/proc/driver/nvidia/version").exists() or which("nvidia-smi") is not None


def peak_bandwidth(name: str, properties: Any = None) -> tuple[float | None, str]:
    """Peak memory bandwidth in GB/s and where the number comes from.

    The data-sheet table first; else ``2 * memory_clock_rate * memory_bus_width / 8`` (double
    data rate) from the device properties, where this torch exposes them.
    """
    for key, gbps in PEAK_BANDWIDTH_GBPS:
        if key in name:
            return gbps, f"data sheet of {key}"
    clock_khz = getattr(properties, "memory_clock_rate", None)
    bus_bits = getattr(properties, "memory_bus_width", None)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, "2 x memory clock x bus width"
    return None, "unknown device: no data-sheet entry and no memory clock in its properties"


def step_bytes(trainable: int, activations: int) -> int:
    """Estimated bytes a float32 Adam training step moves to and from device memory.

    ``trainable`` scalars each cost :data:`BYTES_PER_TRAINABLE` and each of ``activations``
    looked-up embedding elements :data:`BYTES_PER_ACTIVATION`; smaller tensors are ignored. It is
    an estimate of the traffic a perfect implementation cannot avoid, not a measurement.
    """
    return BYTES_PER_TRAINABLE * trainable + BYTES_PER_ACTIVATION * activations
