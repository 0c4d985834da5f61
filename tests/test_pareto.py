"""Pareto fronts against a brute-force oracle on random data with ties and NaN."""

import math

import numpy as np
import pytest

from jnas.report import pareto


def _oracle_front(costs, accs):
    """O(n^2) definition: non-dominated, exact ties kept at the lowest index."""
    n = len(costs)
    ok = [not (math.isnan(costs[i]) or math.isnan(accs[i])) for i in range(n)]
    kept = []
    for i in range(n):
        if not ok[i]:
            continue
        dominated = False
        for j in range(n):
            if j == i or not ok[j]:
                continue
            no_worse = costs[j] <= costs[i] and accs[j] >= accs[i]
            better = costs[j] < costs[i] or accs[j] > accs[i]
            tied_earlier = costs[j] == costs[i] and accs[j] == accs[i] and j < i
            if (no_worse and better) or tied_earlier:
                dominated = True
                break
        if not dominated:
            kept.append(i)
    return sorted(kept, key=lambda i: costs[i])


def _random_points(seed, n):
    rng = np.random.default_rng(seed)
    # Few distinct values so that ties in cost, accuracy and both are common.
    costs = rng.integers(0, 12, n).astype(float)
    accs = rng.integers(0, 10, n) / 10
    costs[rng.random(n) < 0.1] = np.nan
    accs[rng.random(n) < 0.1] = np.nan
    return costs, accs


@pytest.mark.parametrize("seed", range(40))
def test_front_matches_oracle(seed):
    costs, accs = _random_points(seed, n=1 + seed)
    got = pareto.front(costs, accs)
    assert got.dtype == np.int64
    assert list(got) == _oracle_front(list(costs), list(accs))
    # Strictly increasing along the front, in both cost and accuracy.
    assert np.all(np.diff(costs[got]) > 0)
    assert np.all(np.diff(accs[got]) > 0)


@pytest.mark.parametrize("seed", range(40))
def test_best_under_and_budget_to_reach_match_brute_force(seed):
    costs, accs = _random_points(seed, n=1 + seed)
    ok = ~np.isnan(costs) & ~np.isnan(accs)
    for budget in (-0.5, 0, 3, 5.5, 11, np.inf):
        feasible = [i for i in range(len(costs)) if ok[i] and costs[i] <= budget]
        got = pareto.best_under(costs, accs, budget)
        if not feasible:
            assert got is None
            continue
        want = min(feasible, key=lambda i: (-accs[i], costs[i], i))
        assert got == want
    for target in (0.0, 0.35, 0.5, 0.9, 1.0):
        reach = [costs[i] for i in range(len(costs)) if ok[i] and accs[i] >= target]
        got = pareto.budget_to_reach(costs, accs, target)
        assert got == (min(reach) if reach else None)


def test_ties_and_nan_are_explicit():
    costs = [1.0, 1.0, 2.0, 2.0, None, 3.0, 0.5]
    accs = [0.5, 0.5, 0.7, 0.6, 0.99, float("nan"), 0.5]
    # 6 (cost 0.5) dominates 0 and 1; 2 beats 3 at the same cost; 4 and 5 lack a
    # value and never appear nor dominate.
    assert list(pareto.front(costs, accs)) == [6, 2]
    assert pareto.best_under(costs, accs, 1.5) == 6
    assert pareto.budget_to_reach(costs, accs, 0.7) == 2.0
    assert pareto.budget_to_reach(costs, accs, 0.8) is None
    # Exact duplicates: the lowest index stands for the group.
    assert list(pareto.front([2, 2, 2], [0.3, 0.3, 0.3])) == [0]
    assert list(pareto.front([], [])) == []
    assert pareto.best_under([], [], 1.0) is None


@pytest.mark.parametrize(
    "costs, accs, match",
    [
        ([1, 2], [0.5], "same length; got 2 and 1"),
        ([[1, 2]], [[0.1, 0.2]], "must be 1-D"),
        ([1, -2], [0.1, 0.2], r"costs\[1\] = -2"),
        (["a"], [0.1], "numbers or None"),
    ],
)
def test_bad_inputs_name_the_value(costs, accs, match):
    with pytest.raises(ValueError, match=match):
        pareto.front(costs, accs)


def test_bad_budget_and_target():
    with pytest.raises(ValueError, match="budget must not be NaN"):
        pareto.best_under([1], [0.5], float("nan"))
    with pytest.raises(ValueError, match="target_acc must be a number, got '0.7'"):
        pareto.budget_to_reach([1], [0.5], "0.7")
