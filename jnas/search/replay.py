"""Replays the paper's constrained selection on the iotnets release, no training.

The release (``NetConfigs.json``, ``results_RaspPi.json``; see
``../shared/iotnets/README.md``) gives, for 1617 CIFAR-10 networks, the sample
(spacename, law, id), the float32 test accuracy and the Raspberry Pi 3B+
batch-1 latency. ``run`` rebuilds every network with ``jnas.spaces.sample``,
checks that ``jnas.cost`` reproduces the released params and FLOPs, and writes
one result record per released row into a workdir, then the figures and
``summary.md`` into ``<workdir>/figures/`` (``jnas.report.write_all``).

Formats as memory accounting: memory is the stored parameters (release
convention, ``jnas.cost.memory_bytes``) in float32 and in half. The released
accuracy is float32; a half model is assumed to keep it (the paper reports
half as lossless), so half only halves the memory. The per-model custom
format needs trained weights and is null here.

Record keys follow ``jnas.results``, with these replay specifics:
``accuracy[f] = {"val": None, "test": acc}``; ``latency_ms = {"predicted":
None, "measured": t_avg}``; ``round = 0``; ``train = None``; ``release =
{"spacename", "runid", "t_std_ms"}``. The release trained some architectures
more than once (36 topologies in 91 rows, e.g. pnasnet s3 ids 0, 2, 51, 65 and
84), and a store's ``hash`` must be unique, so a replay record's ``hash`` is
``"<Arch.hash>@<space>/<law>/<index>"`` and the plain ``Arch.hash`` is in
``arch_hash``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jnas import cost, latency, report, results, spaces, storage

_GET_DATA = (
    "get the release data files NetConfigs.json and results_RaspPi.json from "
    "https://github.com/IBM/iotnets (MIT) into ../shared/iotnets/, or point "
    "--config.netconfigs / --config.pi_table at them"
)
_KEY = ("spacename", "law", "id")


def load_table(path: str | Path, name: str) -> list[dict[str, Any]]:
    """Reads a release JSON table (a list of objects); `latency.read_json_list`.

    Args:
      path: the file (relative paths are taken from the working directory;
        the config file resolves its defaults itself).
      name: the config key that named it, for error messages.

    Raises:
      FileNotFoundError: the file is missing (the message says how to get it).
      ValueError: the file is not a JSON list of objects.
    """
    return latency.read_json_list(path, f"config.{name}", _GET_DATA)


def join(
    netconfigs: list[dict[str, Any]], pi_table: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Matches the two tables on (spacename, law, id), in NetConfigs order.

    Returns:
      NetConfigs rows with the Pi table's ``t_avg`` and ``t_std`` added (None
      where the Pi table lacks the row).

    Raises:
      ValueError: a row lacks a key field, a key repeats, or the two tables
        disagree on a shared row's accuracy (the message names the row).
    """
    pi: dict[tuple, dict[str, Any]] = {}
    for table_name, table in (("netconfigs", netconfigs), ("pi_table", pi_table)):
        seen = set()
        for n, row in enumerate(table):
            missing = [k for k in _KEY if k not in row]
            if missing or "acc" not in row:
                raise ValueError(
                    f"{table_name} row {n} lacks {missing or ['acc']}: {row}"
                )
            key = tuple(row[k] for k in _KEY)
            if key in seen:
                raise ValueError(f"{table_name} repeats row {key}")
            seen.add(key)
            if table is pi_table:
                pi[key] = row
    out = []
    for row in netconfigs:
        key = tuple(row[k] for k in _KEY)
        timed = pi.get(key, {})
        if timed and timed["acc"] != row["acc"]:
            raise ValueError(
                f"{key}: accuracy {row['acc']} in netconfigs but {timed['acc']} in "
                "pi_table; the tables are from different releases"
            )
        out.append({**row, "t_avg": timed.get("t_avg"), "t_std": timed.get("t_std")})
    return out


def record(row: Mapping[str, Any], *, store_arch: bool = True) -> dict[str, Any]:
    """Builds the result record of one joined release row.

    Args:
      row: a ``join`` row.
      store_arch: include the Arch's JSON dict (about 15 KB per record).

    Raises:
      ValueError: the space/law/id cannot be sampled, or the rebuilt network's
        params or FLOPs differ from the release (naming the row and values).
    """
    space = spaces.canonical(row["spacename"])
    net = spaces.sample(space, row["law"], int(row["id"]))
    costs = cost.node_costs(net)
    n_params = sum(c.params for c in costs)
    n_flops = sum(c.flops for c in costs)
    if n_params != row.get("params", n_params) or n_flops != row.get("flops", n_flops):
        raise ValueError(
            f"{row['spacename']} {row['law']} id {row['id']}: rebuilt params/flops "
            f"{n_params}/{n_flops} differ from the release's "
            f"{row.get('params')}/{row.get('flops')}"
        )
    acc = float(row["acc"])
    return {
        "hash": f"{net.hash}@{space}/{row['law']}/{row['id']}",
        "arch_hash": net.hash,
        "space": space,
        "law": row["law"],
        "index": int(row["id"]),
        "arch": net.to_dict() if store_arch else None,
        "round": 0,
        "params": n_params,
        "flops": n_flops,
        "macs": sum(c.macs for c in costs),
        "memory_bytes": {
            "float32": cost.memory_bytes(net, "float32"),
            "half": cost.memory_bytes(net, "half"),
            "custom": None,
        },
        "latency_ms": {"predicted": None, "measured": row.get("t_avg")},
        "accuracy": {
            "float32": {"val": None, "test": acc},
            "half": {"val": None, "test": acc},
            "custom": None,
        },
        "custom_format": None,
        "train": None,
        "release": {
            "spacename": row["spacename"],
            "runid": row.get("runid"),
            "t_std_ms": row.get("t_std"),
        },
    }


def run(config: Any, workdir: str | Path) -> list[Path]:
    """Replays the release into ``workdir``; figures and summary to figures/.

    Resumable: rows already in ``results.jsonl`` are skipped, and a workdir
    made by a different config is refused (``results.write_config``).

    Args:
      config: an ``experiments/iotnets_replay.py`` config (a ConfigDict or a
        mapping): ``netconfigs``, ``pi_table``, ``limit`` (0: all rows),
        ``store_arch``, ``constraints.memory_bytes``, ``constraints.latency_ms``,
        ``memory_sweep_bytes``, ``target_accuracies``.
      workdir: output folder.

    Returns:
      The paths written by ``report.write_all`` (figures, then summary.md).
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if cfg.get("mode", "replay") != "replay":
        raise ValueError(f"config.mode must be 'replay', got {cfg['mode']!r}")
    limit = int(cfg.get("limit") or 0)
    if limit < 0:
        raise ValueError(f"config.limit must be >= 0 (0: all rows), got {limit}")
    rows = join(
        load_table(cfg["netconfigs"], "netconfigs"),
        load_table(cfg["pi_table"], "pi_table"),
    )
    if limit:
        rows = rows[:limit]
    results.write_config(workdir, cfg)
    store = results.Store(workdir)
    done = {(r["space"], r["law"], r["index"]) for r in store.records()}
    for row in rows:
        key = (spaces.canonical(row["spacename"]), row["law"], int(row["id"]))
        if key not in done:
            store.append(record(row, store_arch=bool(cfg.get("store_arch", True))))
    return report.write_all(
        results.load(workdir),
        storage.path(workdir) / report.FIGURES_DIR,
        **report.options_from_config(cfg),
    )
