"""A pod of N hosts, simulated: how each way of sharing a search's buckets copes.

    python benchmarks/pod_simulation.py [--candidates 3000] [--hosts 8,64,256]
        [--lease 100] [--restart 120] [--seed 0] [--json OUT]

The input is real: `--candidates` networks sampled from the paper's laws
(`experiments/paper.py`, round 0, seed `--seed`), deduplicated and grouped
into buckets exactly as the search does (`population.plan` with the paper's
`max_bucket` and `max_waste`; the device memory bound fixed at 16 GB so the
plan does not depend on this machine), each bucket's cost the search's own
estimate (`search.loop._bucket_cost`: compiling plus padded training MACs;
only ratios matter here). Each scheduler then runs those buckets on N hosts
in an event simulation:

- **static**: bucket b on host b % N, in order, and the round ends when the
  slowest host does (what jnas did before the work queue). A host that dies
  ends the job (JAX's coordination service stops every process); the job is
  restarted `--restart` seconds later on the N - 1 others, keeps what was
  recorded and re-splits the rest the same way; every bucket in flight at the
  failure is redone.
- **queue**: one queue, longest first, the next bucket to whichever host is
  free (`distributed.take` as of issue 15); a failure ends the job as above.
- **lease**: the same queue, and a dead host's bucket goes to a live one once
  its heartbeat lease (`--lease` s, JAX's default heartbeat timeout) has run
  out (`distributed.WorkQueue`, issue 19): the others never stop.
- **balanced**: lease, on the plan made for N processes with
  `config.distributed.balance = 4` (`search.loop._plan`: a bucket costing more
  than the round's total / (4 N) is split), so no single bucket outlasts the
  rest of the round.

Scenarios: `none`; `fail`: one host dies at half the failure-free lower bound
(the host holding the most expensive bucket in flight then, the worst case);
`slow`: every eighth host runs at half speed; `fail+slow`.

Printed per (hosts, scenario, scheduler): makespan over the lower bound
max(W / total speed, the costliest network / the fastest host), W the
estimated work of the plan that scheduler runs (its buckets' costs, padding
included: padding is the plan's trade of work for fewer programs, not the
scheduler's). The largest bucket is left out of the bound on purpose: a
bucket can be split down to one network, so a bucket that outlasts the rest
of the round is the plan's choice, not a bound (the unsplit plans' largest
bucket is printed too). Then the idle
fraction of the live hosts' capacity until the makespan, and the work redone
after failures (as a fraction of the total).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for experiments/

from experiments import paper  # noqa: E402
from jnas.search import config as config_lib  # noqa: E402
from jnas.search import loop, sampling  # noqa: E402

SCHEDULERS = ("static", "queue", "lease", "balanced")
BALANCE = 4.0  # config.distributed.balance of the "balanced" scheduler
SCENARIOS = ("none", "fail", "slow", "fail+slow")


def population_of(candidates: int, seed: int):
    """The paper's config and its round 0 of `candidates` distinct networks."""
    config = paper.get_config("half")
    pairs = config_lib.validate(config)
    archs = sampling.sample_round(pairs, candidates, seed=seed, round_index=0)
    return config, list({a.hash: a for a in archs}.values())


def bucket_costs(config, archs, processes=1, balance=0.0) -> list[float]:
    """The search's plan of `archs` for `processes` (`search.loop._plan`,
    the device memory bound fixed at 16 GB); each bucket's estimated cost."""
    config = config.copy_and_resolve_references()
    config.distributed.balance = balance
    plan = loop._plan(config, archs, processes=processes, memory_budget=16 * 2**30)
    return [loop._bucket_cost(config, b) for b, _ in plan]


def run_phase(costs, hosts, speeds, start, done, kind, fail=None, lease=0.0):
    """Simulates from `start` on `hosts`; returns (end, busy, redone, stopped).

    `done` (buckets recorded) is updated in place. `fail` = (host, time):
    with kind "lease" the host's bucket in flight goes back to the queue at
    time + lease and the others go on; with the other kinds the job dies at
    the failure: buckets finished by then count, every one in flight is lost
    (`stopped` is then True and `end` the failure's time).
    """
    busy = redone = 0.0
    todo = [b for b in range(len(costs)) if b not in done]
    queue = deque(sorted(todo, key=lambda b: (-costs[b], b)))
    lists = {h: deque() for h in hosts}
    for b in todo:  # static: bucket b on host b % N
        lists[hosts[b % len(hosts)]].append(b)
    stop_at = fail[1] if fail is not None and kind != "lease" else None
    orphans: list[tuple[float, int]] = []  # (available from, bucket)
    events = [(start, h, -1) for h in hosts]  # (time, host, bucket it finishes)
    heapq.heapify(events)
    began: dict[int, float] = {}
    end = start
    while events:
        t, h, finished = heapq.heappop(events)
        if stop_at is not None and t > stop_at:  # the job died first
            if finished >= 0:
                redone += (stop_at - began[h]) * speeds[h]
                busy += stop_at - began[h]
            continue
        if finished >= 0:
            done.add(finished)
            busy += t - began[h]
            end = max(end, t)
        if fail is not None and h == fail[0] and t >= fail[1]:
            continue  # dead
        orphans.sort()
        if kind == "static":
            b, begin = (lists[h].popleft() if lists[h] else None), t
        elif orphans and orphans[0][0] <= t:  # a dead host's bucket first
            b, begin = orphans.pop(0)[1], t
        elif queue:
            b, begin = queue.popleft(), t
        elif orphans:
            available, b = orphans.pop(0)
            begin = max(t, available)
        else:
            b = None
        if b is None:
            end = max(end, t)
            continue
        finish = begin + costs[b] / speeds[h]
        if kind == "lease" and fail is not None and h == fail[0]:
            if begin >= fail[1]:  # died while waiting for it
                orphans.append((fail[1] + lease, b))
                continue
            if fail[1] < finish:  # dies mid-bucket: its lease runs out
                redone += (fail[1] - begin) * speeds[h]
                busy += fail[1] - begin
                orphans.append((fail[1] + lease, b))
                continue
        began[h] = begin
        heapq.heappush(events, (finish, h, b))
    if stop_at is not None:
        return stop_at, busy, redone, True
    return end, busy, redone, False


def simulate(costs, n, scenario, kind, lease, restart, lower):
    speeds = {h: (0.5 if "slow" in scenario and h % 8 == 7 else 1.0) for h in range(n)}
    hosts = list(range(n))
    fail = None
    if "fail" in scenario:
        # The failing host: the one whose bucket in flight at the failure is
        # the most expensive, found by a failure-free dry run.
        fail_time = 0.5 * lower
        victim = _busiest_at(costs, hosts, speeds, kind, fail_time)
        fail = (victim, fail_time)
    done: set[int] = set()
    end, busy, redone, stopped = run_phase(
        costs, hosts, speeds, 0.0, done, kind, fail, lease
    )
    total_speed = sum(speeds.values())
    if stopped:  # restarted on the survivors; the downtime is idle capacity
        survivors = [h for h in hosts if h != fail[0]]
        end, _, redone2, _ = run_phase(
            costs, survivors, speeds, fail[1] + restart, done, kind
        )
        redone += redone2
    if fail is not None:
        capacity = total_speed * fail[1] + (total_speed - speeds[fail[0]]) * max(
            0.0, end - fail[1]
        )
    else:
        capacity = total_speed * end
    assert len(done) == len(costs), (kind, scenario, len(done), len(costs))
    total = sum(costs)
    return {
        "makespan": end,
        "ratio": end / lower,
        "idle": 1 - (total + redone) / capacity,
        "redone": redone / total,
    }


def _busiest_at(costs, hosts, speeds, kind, when):
    """The host running the most expensive bucket at `when`, failure-free."""
    order = sorted(range(len(costs)), key=lambda b: -costs[b])
    if kind == "static":
        best, best_cost = hosts[0], -1.0
        for h in hosts:
            t = 0.0
            for b in range(h, len(costs), len(hosts)):
                d = costs[b] / speeds[h]
                if t <= when < t + d and costs[b] > best_cost:
                    best, best_cost = h, costs[b]
                t += d
        return best
    free = [(0.0, h) for h in hosts]
    heapq.heapify(free)
    best, best_cost = hosts[0], -1.0
    for b in order:
        t, h = heapq.heappop(free)
        d = costs[b] / speeds[h]
        if t <= when < t + d and costs[b] > best_cost:
            best, best_cost = h, costs[b]
        heapq.heappush(free, (t + d, h))
    return best


def lower_bound(total, largest, n, scenario):
    """max(total work / total speed, the costliest single network / fastest)."""
    speeds = [0.5 if "slow" in scenario and h % 8 == 7 else 1.0 for h in range(n)]
    return max(total / sum(speeds), largest / max(speeds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=3000)
    parser.add_argument("--hosts", default="8,64,256")
    parser.add_argument("--lease", type=float, default=100.0)
    parser.add_argument("--restart", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    config, archs = population_of(args.candidates, args.seed)
    costs = bucket_costs(config, archs)
    largest = max(bucket_costs(config, [a])[0] for a in archs)
    print(
        f"{args.candidates} sampled, {len(archs)} distinct networks, {len(costs)} "
        f"buckets; bucket cost {min(costs):.0f}..{max(costs):.0f} s (estimate), "
        f"total {sum(costs) / 3600:.1f} h; the costliest network alone "
        f"{largest:.0f} s; "
        f"lease {args.lease:.0f} s, restart {args.restart:.0f} s"
    )
    rows = []
    print(f"{'hosts':>5} {'scenario':<10} {'scheduler':<9} {'buckets':>7} "
          f"{'makespan/LB':>11} {'idle':>6} {'redone':>7}")  # fmt: skip
    for n in (int(x) for x in args.hosts.split(",")):
        split = bucket_costs(config, archs, processes=n, balance=BALANCE)
        for scenario in SCENARIOS:
            for kind in SCHEDULERS:
                c, k = (split, "lease") if kind == "balanced" else (costs, kind)
                lower = lower_bound(sum(c), largest, n, scenario)
                r = simulate(c, n, scenario, k, args.lease, args.restart, lower)
                r["buckets"] = len(c)
                rows.append({"hosts": n, "scenario": scenario, "scheduler": kind, **r})
                print(f"{n:>5} {scenario:<10} {kind:<9} {len(c):>7} {r['ratio']:>11.3f} "
                      f"{r['idle']:>6.1%} {r['redone']:>7.2%}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"buckets": len(costs), "rows": rows}, f, indent=1)
    assert all(math.isfinite(r["ratio"]) for r in rows)


if __name__ == "__main__":
    main()
