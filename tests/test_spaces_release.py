"""All 1617 released configurations: params and flops reproduced exactly."""

import json
from pathlib import Path

import pytest

from jnas import cost, spaces

SHARED = Path(__file__).resolve().parents[2] / "shared"
NET_CONFIGS = SHARED / "iotnets" / "NetConfigs.json"


@pytest.fixture(scope="module")
def released():
    if not NET_CONFIGS.exists():
        pytest.skip(f"{NET_CONFIGS} absent (CI places the checkout beside shared/)")
    return json.loads(NET_CONFIGS.read_text())


def test_release_params_and_flops_match_exactly(released):
    assert len(released) == 1617
    params_ok = flops_ok = 0
    mismatches = []
    for entry in released:
        net = spaces.sample(entry["spacename"], entry["law"], entry["id"])
        costs = cost.node_costs(net)
        p = sum(c.params for c in costs)
        f = sum(c.flops for c in costs)
        params_ok += p == entry["params"]
        flops_ok += f == entry["flops"]
        if p != entry["params"] or f != entry["flops"]:
            mismatches.append(
                f"{entry['spacename']} {entry['law']} id {entry['id']}: params "
                f"{p} vs {entry['params']}, flops {f} vs {entry['flops']}"
            )
    summary = f"params {params_ok}/1617, flops {flops_ok}/1617"
    assert not mismatches, summary + "\n" + "\n".join(mismatches[:20])


def test_release_samples_have_provenance_meta(released):
    entry = released[0]
    net = spaces.sample(entry["spacename"], entry["law"], entry["id"])
    assert dict(net.meta) == {
        "space": entry["spacename"].removeprefix("random_net_"),
        "law": entry["law"],
        "index": entry["id"],
    }
