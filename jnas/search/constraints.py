"""The constraints of a search: a candidate's costs, the filter before
training, and feasibility of a finished candidate.

`Constraints` holds the bounds as plain values (`from_config` reads them), so
the functions here never see the whole config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from jnas import arch as arch_lib
from jnas import cost, latency, precision


class NoFeasibleCandidatesError(RuntimeError):
    """No sampled candidate satisfies the constraints."""


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Bounds on a candidate; 0 means no bound.

    Attributes:
      memory_bytes: bound on the params' storage in `memory_format`.
      memory_kind: "float32", "half" or "custom" (the record's memory key).
      memory_format: the format the bound is checked in before training
        ("custom" formats are known only after training: see `from_config`).
      latency_ms: bound on the predicted latency.
      flops: bound on the FLOPs.
    """

    memory_bytes: float = 0
    memory_kind: str = "float32"
    memory_format: precision.FloatFormat = precision.FLOAT32
    latency_ms: float = 0.0
    flops: float = 0


def memory_format(kind: str, min_bits_for_memory: int) -> precision.FloatFormat:
    """The number format the memory constraint is checked in before training.

    "custom" formats are known only after training; the filter then assumes
    `min_bits_for_memory` bits (and the record says whether the chosen format
    kept the candidate within the budget).
    """
    if kind == "float32":
        return precision.FLOAT32
    if kind == "half":
        return precision.HALF
    bits = min_bits_for_memory  # only the width matters here
    exponent = min(8, bits - 2)
    return precision.FloatFormat(exponent, bits - 1 - exponent)


def from_config(config: Any) -> Constraints:
    """The `Constraints` of a search config (`config.constraints`, `formats`)."""
    limits = config.constraints
    return Constraints(
        memory_bytes=limits.memory_bytes,
        memory_kind=limits.memory_format,
        memory_format=memory_format(
            limits.memory_format, config.formats.min_bits_for_memory
        ),
        latency_ms=limits.latency_ms,
        flops=limits.flops,
    )


def load_predictor(source: str) -> Any:
    """The latency predictor named by config.latency.predictor (or None)."""
    if source == "none":
        return None
    if source == "raspi3b":
        return latency.raspi3b_predictor()
    return latency.load(source)


def costs(arch: arch_lib.Arch, predictor: Any) -> dict[str, Any]:
    """Counts, memory per format and predicted latency of one candidate."""
    return {
        "params": cost.params(arch),
        "flops": cost.flops(arch),
        "macs": cost.macs(arch),
        "memory_bytes": {
            "float32": cost.memory_bytes(arch, precision.FLOAT32),
            "half": cost.memory_bytes(arch, precision.HALF),
        },
        "latency_ms": {
            "predicted": None if predictor is None else float(predictor.predict(arch)),
            "measured": None,
        },
    }


def satisfies(limits: Constraints, arch: arch_lib.Arch, c: dict[str, Any]) -> bool:
    """Whether a candidate's costs (`costs`) meet the constraints before training."""
    if limits.memory_bytes:
        if cost.memory_bytes(arch, limits.memory_format) > limits.memory_bytes:
            return False
    if limits.latency_ms:
        if c["latency_ms"]["predicted"] > limits.latency_ms:
            return False
    return not limits.flops or c["flops"] <= limits.flops


def feasible(limits: Constraints, record: dict[str, Any]) -> bool:
    """Whether a finished candidate meets every constraint in its format."""
    memory = record["memory_bytes"][limits.memory_kind]
    if limits.memory_bytes and memory > limits.memory_bytes:
        return False
    lat = record["latency_ms"]["predicted"]
    if limits.latency_ms and (lat is None or lat > limits.latency_ms):
        return False
    if limits.flops and record["flops"] > limits.flops:
        return False
    return not record["train"]["diverged"]


def infeasible_message(
    limits: Constraints,
    archs: Sequence[arch_lib.Arch],
    all_costs: Sequence[dict[str, Any]],
) -> str:
    """Why nothing sampled is kept: the bounds and the smallest costs seen."""
    fmt = limits.memory_format
    mem = min(cost.memory_bytes(a, fmt) for a in archs)
    lat = [c["latency_ms"]["predicted"] for c in all_costs]
    lat_text = "n/a" if lat[0] is None else f"{min(lat):.2f} ms"
    flops = min(c["flops"] for c in all_costs)
    return (
        f"no candidate of {len(archs)} sampled satisfies the constraints "
        f"(memory <= {limits.memory_bytes} B in {fmt}, latency <= "
        f"{limits.latency_ms} ms, FLOPs <= {limits.flops}); "
        f"smallest seen: memory {mem} B, latency {lat_text}, FLOPs {flops}. "
        "Relax the budgets or sample smaller laws."
    )
