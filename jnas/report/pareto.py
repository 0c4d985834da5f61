"""Pareto fronts of accuracy (maximised) against a cost (minimised).

The cost is any non-negative number where less is better: memory bytes in a
number format, latency in ms, FLOPs. All functions take two equal-length 1-D
sequences ``costs`` and ``accs`` (lists, tuples or arrays; ``None`` reads as
NaN) and return positions into them.

Conventions, shared by every function:

- A point with a NaN accuracy or a NaN cost is not a candidate (an untrained,
  diverged or unmeasured model): it is never returned and never dominates.
- Point ``j`` dominates ``i`` when ``cost[j] <= cost[i]`` and
  ``acc[j] >= acc[i]`` with at least one strict. The front is the set of
  non-dominated points.
- Exact ties (the same cost and the same accuracy) are kept once: the front
  holds the lowest index of each tied group, so it never lists two equal
  points and its accuracies increase strictly with cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float | None] | np.ndarray


def _as_arrays(costs: ArrayLike, accs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        c = np.asarray(costs, dtype=np.float64)
        a = np.asarray(accs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"costs and accs must be numbers or None: {err}") from None
    if c.ndim != 1 or a.ndim != 1:
        raise ValueError(
            f"costs and accs must be 1-D; got shapes {c.shape} and {a.shape}"
        )
    if c.shape != a.shape:
        raise ValueError(
            f"costs and accs must have the same length; got {len(c)} and {len(a)}"
        )
    valid = ~np.isnan(c)
    if np.any(c[valid] < 0):
        i = int(np.flatnonzero(valid & (c < 0))[0])
        raise ValueError(f"costs must be non-negative; costs[{i}] = {c[i]}")
    return c, a


def _check_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


def front(costs: ArrayLike, accs: ArrayLike) -> np.ndarray:
    """Returns the indices of the non-dominated points, sorted by cost.

    Args:
      costs: cost of each point (lower is better); NaN/None excludes the point.
      accs: accuracy of each point (higher is better); NaN/None excludes it.

    Returns:
      int64 indices into the inputs, by increasing cost; accuracies along them
      increase strictly. Of exactly tied points only the lowest index appears.
      Empty when no point has both values.

    Raises:
      ValueError: inputs of different lengths, not 1-D, not numeric, or with a
        negative cost (the message names the position).
    """
    c, a = _as_arrays(costs, accs)
    valid = np.flatnonzero(~np.isnan(c) & ~np.isnan(a))
    # Cost ascending, then accuracy descending, then index ascending: the first
    # point of every cost level is its best (lowest-index) one.
    order = valid[np.lexsort((valid, -a[valid], c[valid]))]
    kept = []
    best = -np.inf
    for i in order:
        if a[i] > best:
            kept.append(i)
            best = a[i]
    return np.asarray(kept, dtype=np.int64)


def best_under(costs: ArrayLike, accs: ArrayLike, budget: float) -> int | None:
    """Returns the most accurate point whose cost fits the budget.

    Args:
      costs: cost of each point; NaN/None excludes the point.
      accs: accuracy of each point; NaN/None excludes the point.
      budget: the largest allowed cost (inclusive); ``inf`` allows all.

    Returns:
      The index of the highest accuracy with ``cost <= budget`` (ties: the
      lowest cost, then the lowest index: always a front point), or None if no
      point fits.

    Raises:
      ValueError: bad inputs as in ``front``, or a NaN / non-numeric budget.
    """
    budget = _check_number("budget", budget)
    c, a = _as_arrays(costs, accs)
    idx = front(c, a)
    feasible = idx[c[idx] <= budget]
    return int(feasible[-1]) if len(feasible) else None


def budget_to_reach(
    costs: ArrayLike, accs: ArrayLike, target_acc: float
) -> float | None:
    """Returns the smallest cost at which the front reaches an accuracy.

    Args:
      costs: cost of each point; NaN/None excludes the point.
      accs: accuracy of each point; NaN/None excludes the point.
      target_acc: the accuracy to reach (inclusive: ``acc >= target_acc``).

    Returns:
      min cost over points with ``acc >= target_acc`` (a budget at least this
      large admits a model that accurate), or None if no point reaches it.

    Raises:
      ValueError: bad inputs as in ``front``, or a NaN / non-numeric target.
    """
    target_acc = _check_number("target_acc", target_acc)
    c, a = _as_arrays(costs, accs)
    idx = front(c, a)
    reached = idx[a[idx] >= target_acc]
    return float(c[reached[0]]) if len(reached) else None
