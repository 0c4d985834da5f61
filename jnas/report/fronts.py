"""Accuracy-vs-memory fronts per kind of number format, from a post-training sweep.

The paper's claim: at the same memory, half precision (and per-model custom
formats, a little more) reach higher accuracy than float32, because a bigger
network fits. `points` reads a workdir's sweep rows (``formats.jsonl``, from
``python -m launch.formats``) and gives every network three points (memory in
the release's convention, accuracy): float32, half (E5 M10) and its custom
format, the fewest bits whose accuracy on the ``select`` split is within
``tolerance`` of its float32 accuracy there (ties: the better accuracy, then
more exponent bits, as `jnas.search.formats.format_search`), reported on the
``report`` split. With ``select != report`` (the two halves of the test set,
``test_a`` / ``test_b``) no reported accuracy was measured on the images that
chose the format. `front_table` then gives, per memory budget, the best
network of each kind that fits. `qat_table` sets quantisation-aware training
against post-training rounding: the same networks, one format fixed in
advance, both workdirs swept by the same code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jnas import arch as arch_lib
from jnas import cost, precision
from jnas.report import pareto

KINDS = ("float32", "half", "custom")
KIB = 1024


@dataclasses.dataclass(frozen=True)
class Point:
    """One network in one kind of format.

    Attributes:
      name: "space:law:index".
      kind: "float32", "half" or "custom".
      fmt: the format's text ("float32", "e5m10", "e4m3", ...).
      memory_bytes: its params stored in that format (release convention).
      accuracy: on the report split.
    """

    name: str
    kind: str
    fmt: str
    memory_bytes: int
    accuracy: float


def points(
    records: Sequence[Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
    *,
    select: str,
    report: str,
    tolerance: float = 0.01,
) -> list[Point]:
    """Three points per swept network (float32, half, custom); see the module doc.

    Networks without a float32 row, or without a half row, are left out; a
    network with no format within tolerance of float32 gets float32 as its
    custom format (it keeps its accuracy, at 32 bits).

    Raises:
      ValueError: a row lacks the ``select`` or ``report`` split.
    """
    by_hash: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        for split in (select, report):
            if row.get(split) is None:
                raise ValueError(
                    f"format row {row.get('hash')} {row.get('format')} has no "
                    f"{split!r} accuracy; sweep with splits ({select!r}, {report!r})"
                )
        by_hash.setdefault(row["hash"], {})[row["format"]] = row
    out = []
    half = str(precision.HALF)
    for record in records:
        formats = by_hash.get(record["hash"], {})
        if "float32" not in formats or half not in formats:
            continue
        arch = arch_lib.from_dict(record["arch"])
        name = f"{record['space']}:{record['law']}:{record['index']}"
        reference = formats["float32"][select]
        best = None
        for text, row in formats.items():
            if text == "float32" or row[select] < reference - tolerance - 1e-12:
                continue
            fmt = precision.FloatFormat.parse(text)
            key = (fmt.bits, -row[select], -fmt.exponent_bits)
            if best is None or key < best[0]:
                best = (key, text)
        custom = best[1] if best else "float32"

        def point(kind, text, name=name, arch=arch, formats=formats):
            fmt = precision.FLOAT32 if text == "float32" else text
            return Point(
                name,
                kind,
                text,
                cost.memory_bytes(arch, fmt),
                float(formats[text][report]),
            )

        out += [point("float32", "float32"), point("half", half)]
        out.append(point("custom", custom))
    return out


def best_under(pts: Sequence[Point], kind: str, budget: float) -> Point | None:
    """The most accurate point of ``kind`` within ``budget`` bytes (None if none)."""
    own = [p for p in pts if p.kind == kind]
    i = pareto.best_under(
        [p.memory_bytes for p in own], [p.accuracy for p in own], budget
    )
    return None if i is None else own[i]


def front_table(pts: Sequence[Point], budgets: Iterable[float]) -> str:
    """Markdown: per budget, the best network of each kind and its accuracy."""
    lines = [
        "| memory budget | " + " | ".join(KINDS) + " | half - float32 |",
        "|---|" + "---|" * (len(KINDS) + 1),
    ]
    for budget in budgets:
        cells, acc = [], {}
        for kind in KINDS:
            p = best_under(pts, kind, budget)
            if p is None:
                cells.append("none fits")
                continue
            acc[kind] = p.accuracy
            cells.append(
                f"{100 * p.accuracy:.2f}% {p.name} ({p.fmt}, "
                f"{p.memory_bytes / KIB:.1f} KiB)"
            )
        gain = (
            f"{100 * (acc['half'] - acc['float32']):+.2f}"
            if {"half", "float32"} <= set(acc)
            else ""
        )
        lines.append(f"| {budget / KIB:g} KiB | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines) + "\n"


def qat_table(
    base_records: Sequence[Mapping[str, Any]],
    base_rows: Iterable[Mapping[str, Any]],
    qat_records: Sequence[Mapping[str, Any]],
    qat_rows: Iterable[Mapping[str, Any]],
    fmt: str,
    *,
    report: str,
) -> str:
    """Markdown: per network, post-training rounding to ``fmt`` against QAT in it.

    Both sides are read from format-sweep rows on the ``report`` split: the
    base run's float32 and ``fmt`` rows (its checkpoint rounded after
    training), and the QAT run's ``fmt`` row (its checkpoint, trained with
    the forward pass rounding every stored value to ``fmt``, rounded the same
    way: what the QAT network deploys as). Networks are matched by
    "space:law:index"; those missing on either side are left out. ``fmt`` is
    fixed before either run, so no column is chosen on the split it reports.

    Raises:
      ValueError: no network has the rows on both sides (names what is missing).
    """
    fmt = str(precision.FloatFormat.parse(fmt))

    def by_name(records, rows):
        acc: dict[str, dict[str, float]] = {}
        for row in rows:
            acc.setdefault(row["hash"], {})[row["format"]] = row.get(report)
        return {
            f"{r['space']}:{r['law']}:{r['index']}": acc.get(r["hash"], {})
            for r in records
        }

    base, qat = by_name(base_records, base_rows), by_name(qat_records, qat_rows)
    lines = [
        f"| network | float32 | post-training {fmt} | QAT in {fmt} "
        "| QAT - post-training | QAT - float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(qat):
        b, q = base.get(name, {}), qat[name]
        if None in (b.get("float32"), b.get(fmt), q.get(fmt)):
            continue
        f32, post, trained = b["float32"], b[fmt], q[fmt]
        lines.append(
            f"| {name} | {100 * f32:.2f}% | {100 * post:.2f}% | {100 * trained:.2f}% "
            f"| {100 * (trained - post):+.2f} | {100 * (trained - f32):+.2f} |"
        )
    if len(lines) == 2:
        raise ValueError(
            f"no network has float32 and {fmt} rows on {report!r} in the base "
            f"workdir and a {fmt} row in the QAT workdir (QAT networks: "
            f"{', '.join(sorted(qat)) or 'none'}); run python -m launch.formats "
            "on both"
        )
    return "\n".join(lines) + "\n"
