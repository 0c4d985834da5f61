"""jnas.latency / roofline / latency_fit / calibration: the predictor against a
known (oracle) model, save/load, metrics by hand, bad input, the Pi table, and a
small measurement + calibration run on this machine."""

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from jnas import cost, latency, spaces
from jnas.latency import calibration, roofline
from jnas.latency import fitting as latency_fit

PI = roofline.RASPBERRY_PI_3B_PLUS  # the oracle's tables are Pi-like

SHARED = Path(__file__).resolve().parents[2] / "shared"
PI_TABLE = SHARED / "iotnets/results_RaspPi.json"
# Small laws of six spaces: every node kind appears (depthwise, grouped, concat,
# maxpool, conv bias, ...) and features take milliseconds.
SMALL = [
    ("mobilenetv2", "s6"),
    ("resnext", "s3"),
    ("probenet_s", "s2"),
    ("pnasnet", "s3"),
    ("densenet", "s3"),
    ("resnet", "s5"),
]


@pytest.fixture(scope="module")
def archs():
    return [spaces.sample(s, law, i) for i in range(12) for s, law in SMALL]


# The oracle's extras; a depthwise conv's MACs equal its im2col elements, so
# fitting both for it would leave their split undetermined.
ORACLE_EXTRAS = {
    "conv_dense": ("im2col",),
    "conv_1x1": ("im2col",),
    "conv_depthwise": ("groups",),
    "conv_grouped": ("groups",),
}


def _oracle(device=roofline.RASPBERRY_PI_3B_PLUS) -> roofline.Predictor:
    """A known model with the 'compact' tie: three parameter groups."""
    groups = {
        "conv": {  # 3x3 convs compute-bound, thin 1x1 ones memory-bound
            "flops_per_s": 2e9,
            "bytes_per_s": 2e9,
            "call_ms": 0.02,
            "im2col_ms": 2e-6,
        },
        "conv_grouped": {
            "flops_per_s": 0.3e9,
            "bytes_per_s": 1e9,
            "call_ms": 0.05,
            "groups_ms": 1e-3,
        },
        "elementwise": {"flops_per_s": 1e9, "bytes_per_s": 0.2e9, "call_ms": 0.01},
    }
    tie = roofline.TIES["compact"]
    kinds = {k: dict(groups[tie[k]]) for k in roofline.KINDS}
    return roofline.Predictor(device, "e8m23", kinds, 0.3)


def test_fit_recovers_a_known_roofline_model(archs):
    truth = _oracle()
    y = truth.predict_many(archs)
    # Sample indices 0, 2, 4, ... of every space train; 1, 3, 5, ... test.
    train = np.array([(i // len(SMALL)) % 2 == 0 for i in range(len(archs))])
    fitted = latency.fit(
        [a for a, t in zip(archs, train, strict=True) if t],
        y[train],
        tie="compact",
        extras=ORACLE_EXTRAS,
        noise_floor=0.01,
        device=PI,
    )
    # Predictions on networks the fit has not seen match the oracle's.
    test = [a for a, t in zip(archs, train, strict=True) if not t]
    np.testing.assert_allclose(fitted.predict_many(test), y[~train], rtol=0.03)
    # Parameters that dominate the totals are recovered too.
    for kind, key in [
        ("conv_dense", "flops_per_s"),
        ("conv_depthwise", "groups_ms"),
        ("conv_grouped", "flops_per_s"),
        ("relu", "bytes_per_s"),
    ]:
        assert fitted.kinds[kind][key] == pytest.approx(truth.kinds[kind][key], rel=0.1)
    assert fitted.network_ms == pytest.approx(truth.network_ms, rel=0.1)
    # Both roofs bind somewhere: the max() is needed, a sum would not fit.
    bounds = {b for a in archs[:12] for *_, b in truth.breakdown(a)}
    assert bounds == {"compute", "memory"}


def test_fitted_throughput_never_exceeds_the_device_peak(archs):
    # The data come from a device twice as fast as the stated peak allows.
    fast = _oracle()
    kinds = {
        k: dict(v, flops_per_s=v["flops_per_s"] * 10) for k, v in fast.kinds.items()
    }
    y = dataclasses.replace(fast, kinds=kinds).predict_many(archs)
    slow_device = roofline.Device("slow", 3e9, 1e9)
    fitted = latency.fit(
        archs, y, device=slow_device, tie="compact", extras=ORACLE_EXTRAS
    )
    assert latency_fit.check_physical(fitted) == []
    assert max(p["flops_per_s"] for p in fitted.kinds.values()) <= 3e9 * (1 + 1e-9)
    assert "*" in fitted.report()  # the capped roofs are flagged


def test_save_load_round_trip(archs, tmp_path):
    y = _oracle().predict_many(archs)
    fitted = latency.fit(
        archs, y, spreads_ms=0.02 * y, tie="compact", extras=ORACLE_EXTRAS, device=PI
    )
    path = tmp_path / "predictor.json"
    fitted.save(path)
    loaded = latency.load(path)
    assert loaded.to_dict() == fitted.to_dict()
    np.testing.assert_array_equal(
        loaded.predict_many(archs), fitted.predict_many(archs)
    )
    assert json.loads(path.read_text())["model"] == "roofline"  # plain JSON


def test_load_rejects_malformed_files(tmp_path):
    path = tmp_path / "p.json"
    data = _oracle().to_dict()
    data["kinds"]["relu"]["call_ms"] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="relu.call_ms"):
        latency.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        latency.load(path)


def test_metrics_against_hand_computed_values():
    m = latency.evaluate([1.0, 2.2, 2.9, 4.0], [1.0, 2.0, 3.0, 5.0])
    # relative errors: 0, +0.1, -1/30, -0.2
    assert m["n"] == 4
    assert m["within_5"] == 50.0 and m["within_10"] == 75.0  # +10% counts
    assert m["median_ape"] == pytest.approx((1 / 30 + 0.1) / 2 * 100)
    assert m["rmspe"] == pytest.approx(math.sqrt((0.01 + 1 / 900 + 0.04) / 4) * 100)
    assert m["spearman"] == pytest.approx(1.0)
    assert latency.evaluate([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])["spearman"] == -1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_fit_rejects_bad_times(archs, bad):
    y = list(_oracle().predict_many(archs))
    y[3] = bad
    with pytest.raises(ValueError, match="index 3"):
        latency.fit(archs, y, tie="compact", device=PI)


def test_fit_rejects_non_architectures_and_too_few_measurements(archs):
    with pytest.raises(ValueError, match="not a jnas.arch.Arch"):
        latency.fit([("mobilenetv2", "s6", 0)], [1.0], device=PI)
    with pytest.raises(ValueError, match="cannot determine"):
        latency.fit(archs[:10], np.ones(10), device=PI)  # ~40 parameters
    with pytest.raises(ValueError, match="2 architectures but 1"):
        latency.fit(archs[:2], [1.0], device=PI)
    with pytest.raises(ValueError, match="tie="):
        latency.fit(archs, np.ones(len(archs)), tie="loose", device=PI)
    # No silent default device: another device's table would be fitted
    # against the Pi's ceilings.
    with pytest.raises(ValueError, match=r"device=None: fit needs the measured"):
        latency.fit(archs, np.ones(len(archs)))
    with pytest.raises(ValueError, match="finite and > 0"):
        latency.evaluate([1.0], [0.0])
    with pytest.raises(ValueError, match="finite and > 0"):
        latency.Measurement.from_samples([1.0, -2.0], warmup=0, batch=1)


def test_release_table_rejects_bad_rows(tmp_path):
    row = {
        "spacename": "random_net_resnext",
        "law": "s3",
        "id": 0,
        "t_avg": 10.0,
        "t_std": 1.0,
    }
    path = tmp_path / "t.json"
    for change, message in [
        ({"t_avg": -1.0}, "t_avg"),
        ({"t_std": float("nan")}, "t_std"),
        ({"law": "s9"}, "cannot build"),
        ({"id": None}, "cannot build"),
    ]:
        path.write_text(json.dumps([row, row | change]))
        with pytest.raises(ValueError, match=f"row 1.*{message}"):
            latency.read_release_table(path)


@pytest.fixture(scope="module")
def pi_entries():
    """The Pi table read once for the module (1617 networks built: seconds)."""
    if not PI_TABLE.exists():
        pytest.skip("../shared/iotnets is absent")
    return latency.read_release_table(PI_TABLE)


@pytest.mark.xdist_group("pi_table")  # one worker reads it (pytest-xdist)
def test_pi_table_ingestion(pi_entries):
    entries = pi_entries
    assert len(entries) == 1617
    families = {e.source["space"] for e in entries}
    assert families == {"densenet", "googlenet", "mobilenetv2", "pnasnet", "resnext"}
    assert min(e.latency_ms for e in entries) == pytest.approx(5.4, abs=0.01)


def test_spill_counts_bytes_beyond_the_cache():
    net = spaces.sample("resnext", "s3", 0)
    col = roofline.EXTRAS.index("spill")
    everything = roofline.features(net, cache_bytes=0)
    np.testing.assert_array_equal(everything.extras[:, col], everything.bytes)
    assert not roofline.features(net, cache_bytes=1 << 40).extras[:, col].any()
    pi = roofline.features(net, cache_bytes=512 * 1024).extras[:, col]
    np.testing.assert_array_equal(pi, np.maximum(everything.bytes - 512 * 1024, 0))
    with pytest.raises(ValueError, match="cache_bytes"):
        roofline.Device("x", 1e9, 1e9, cache_bytes=-1)


def test_tick_spreads_marks_only_pinned_timings():
    y = [39.9, 40.1, 45.0, 49.4, 59.6]
    s = [0.2, 0.1, 0.2, 0.3, 9.0]
    # 39.9, 40.1 and 59.6 sit at a 10 ms tick; 59.6 is already imprecise.
    np.testing.assert_allclose(
        latency.tick_spreads(y, s), [3.99, 4.01, 0.2, 0.3, 9.0], rtol=1e-12
    )


def test_shipped_pi_predictor_loads_without_the_table():
    shipped = latency.raspi3b_predictor()
    assert shipped.device == roofline.RASPBERRY_PI_3B_PLUS
    assert shipped.info["networks"] == 1617 and not shipped.borrowed
    assert latency_fit.check_physical(shipped) == []
    # MobileNetV2 s6 networks take 5-9 ms on the Pi.
    assert 3 < shipped.predict(spaces.sample("mobilenetv2", "s6", 0)) < 15


@pytest.mark.xdist_group("pi_table")
def test_shipped_pi_predictor_matches_its_regeneration(pi_entries):
    # What `benchmarks/latency_pi.py --no-eval --save ...` writes (~15 s).
    entries = pi_entries
    fresh = latency.fit_pi_table(entries)
    shipped = latency.raspi3b_predictor()
    archs = [e.arch for e in entries[::10]]
    np.testing.assert_allclose(
        shipped.predict_many(archs), fresh.predict_many(archs), rtol=1e-3
    )
    assert shipped.info["extras"] == fresh.info["extras"]


def test_measure_on_this_machine():
    net = spaces.sample("probenet_s", "s2", 0)
    m = latency.measure(net, warmup=2, repeats=5)
    assert len(m.samples_ms) == 5 and m.min_ms <= m.median_ms <= max(m.samples_ms)
    assert m.min_ms > 0 and m.compile_s > 0
    host = latency.host_description()
    assert {"cpu", "xla_flags", "affinity", "loadavg", "jax"} <= host.keys()


def test_measure_names_a_network_that_cannot_be_built(monkeypatch):
    from jnas import nn

    def broken(*args, **kwargs):
        raise NotImplementedError("no such op")

    monkeypatch.setattr(nn, "create_model", broken)
    net = spaces.sample("resnext", "s3", 0)
    with pytest.raises(ValueError, match=f"{net.hash[:12]}.*cannot be built"):
        latency.measure(net, repeats=1)


def test_small_calibration_run_resumes(tmp_path):
    from experiments import calibrate as calibrate_config

    config = calibrate_config.get_config("small")
    config.pin_threads = False  # JAX is already initialised in this process
    config.n_calibration, config.n_evaluation, config.repeats = 7, 3, 4
    metrics = calibration.calibrate_and_fit(config, tmp_path, log_fn=lambda s: None)
    assert metrics["evaluation"]["n"] == 3
    assert 0 <= metrics["evaluation"]["within_10"] <= 100
    lines = (tmp_path / "calibration.jsonl").read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["host"]["cpu"]
    with pytest.raises(ValueError, match="statistic="):
        latency.read_calibration(tmp_path / "calibration.jsonl", statistic="p90")
    predictor = latency.load(tmp_path / "predictor.json")
    assert latency_fit.check_physical(predictor) == []
    # A rerun measures nothing new; a truncated last line (a kill) is ignored.
    with (tmp_path / "evaluation.jsonl").open("a") as f:
        f.write('{"hash": "trunc')
    again = calibration.calibrate_and_fit(config, tmp_path, log_fn=lambda s: None)
    assert again["calibration"] == metrics["calibration"]
    for name, n in (("calibration.jsonl", 7), ("evaluation.jsonl", 3)):
        assert len((tmp_path / name).read_text().splitlines()) == n


def test_vector_counts_simd_instructions_per_output_channel_block():
    # Hand counts: full vectors of 16, then one half vector of 8, then singles.
    for rows, want in [(64, 4), (16, 1), (7, 7), (8, 1), (12, 5), (24, 2), (31, 9)]:
        assert roofline._row_blocks(rows, 16) == want, rows
    assert roofline._row_blocks(7, 1) == 7
    col = roofline.EXTRAS.index("vector")
    for net in (
        spaces.sample("resnext", "s3", 1),
        spaces.sample("mobilenetv2", "s6", 2),
    ):
        macs = {
            c.name: c.macs for c in cost.node_costs(net) if c.kind.startswith("conv")
        }
        # With one lane there is one instruction per multiply-accumulate.
        one = roofline.features(net, channel_lanes=1)
        convs = [n.name for n in net.nodes if n.op == "conv"]
        kinds = [roofline.KINDS[k] for k in one.kind]
        got = one.extras[[k.startswith("conv") for k in kinds], col]
        np.testing.assert_array_equal(got, [macs[n] for n in convs])
        # Wider vectors never need more instructions, and some need fewer.
        wide = roofline.features(net, channel_lanes=16).extras[:, col]
        assert (wide <= one.extras[:, col]).all() and (wide < one.extras[:, col]).any()


def test_calibration_and_evaluation_networks_share_every_chunk(tmp_path, monkeypatch):
    chunks = []

    def fake_measure_many(archs, **kwargs):
        chunks.append([a.hash for a in archs])
        return [
            latency.Measurement.from_samples([1.0 + i], warmup=0, batch=1)
            for i in range(len(archs))
        ]

    monkeypatch.setattr(latency.measurement, "measure_many", fake_measure_many)
    calib = [spaces.sample("mobilenetv2", "s6", i) for i in range(8)]
    evals = [spaces.sample("resnext", "s3", i) for i in range(16)]
    jobs = [(calib, tmp_path / "c.jsonl"), (evals, tmp_path / "e.jsonl")]
    kwargs = {"measure_kwargs": {}, "chunk": 6, "host": {}, "log_fn": lambda s: None}
    calibration.measure_to_files(jobs, **kwargs)
    c_hash, e_hash = {a.hash for a in calib}, {a.hash for a in evals}
    assert len(chunks) == 4
    for chunk in chunks:  # 2 of the 8 and 4 of the 16 in every chunk of 6
        assert sum(h in c_hash for h in chunk) == 2
        assert sum(h in e_hash for h in chunk) == 4
    read = lambda p: [e.arch.hash for e in latency.read_calibration(p)]
    assert sorted(read(tmp_path / "c.jsonl")) == sorted(c_hash)
    assert sorted(read(tmp_path / "e.jsonl")) == sorted(e_hash)
    chunks.clear()
    calibration.measure_to_files(jobs, **kwargs)  # all measured: nothing to do
    assert chunks == []


def test_unaligned_counts_patches_of_convs_with_ragged_input_channels():
    net = spaces.sample("probenet_s", "s0", 3)  # C_in 3, 107 and 25: none of 8
    col = roofline.EXTRAS.index("unaligned")
    shapes = net.shapes
    patches = []
    for node in net.nodes:
        if node.op == "conv":
            kh, kw = node.attr("kernel")
            h, w, _ = shapes[node.name]
            c_in = shapes[node.inputs[0]][-1]
            patches.append((c_in, c_in * kh * kw * h * w))
    is_conv = [n.op == "conv" for n in net.nodes if n.op != "input"]
    for lanes in (1, 8, 107):
        got = roofline.features(net, pack_lanes=lanes).extras[:, col]
        want = [p if c % lanes else 0 for c, p in patches]
        np.testing.assert_array_equal(got[is_conv], want)
        assert not got[~np.array(is_conv)].any()
    with pytest.raises(ValueError, match="pack_lanes"):
        roofline.Device("x", 1e9, 1e9, pack_lanes=0)


def test_fit_extras_adds_to_every_conv_kind_and_names_unknown_ones():
    got = calibration.fit_extras(["vector", "unaligned"])
    assert set(got) == set(roofline.DEFAULT_EXTRAS)
    for kind, base in roofline.DEFAULT_EXTRAS.items():
        assert got[kind] == (*base, "vector", "unaligned")
    assert calibration.fit_extras(["im2col"]) == dict(roofline.DEFAULT_EXTRAS)
    with pytest.raises(ValueError, match="'simd'"):
        calibration.fit_extras(["simd"])


def test_calibration_config_names_an_unknown_variant():
    from experiments import calibrate as calibrate_config

    assert calibrate_config.get_config("im2col").conv_impl == "im2col"
    with pytest.raises(ValueError, match="'fast'.*known: small"):
        calibrate_config.get_config("small,fast")


def test_calibration_file_errors_name_the_file_and_line(tmp_path):
    missing = tmp_path / "calibration.jsonl"
    with pytest.raises(
        FileNotFoundError, match=r"no calibration file at .*launch.calibrate"
    ):
        latency.read_calibration(missing)
    missing.write_text("")
    with pytest.raises(ValueError, match=r"calibration.jsonl holds no measurements"):
        latency.read_calibration(missing)
    bad = {"hash": "h", "arch": {"version": 1}, "measurement": {}}
    missing.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"calibration.jsonl line 1: bad arch: "):
        latency.read_calibration(missing)


def _tiny(nodes):
    """An architecture from (name, op, inputs, attrs) tuples, 8x8x4 input."""
    from jnas import arch as arch_lib

    conv = {"bias": False, "groups": 1, "kernel": [1, 1], "out_channels": 4}
    conv |= {"padding": [0, 0], "stride": [1, 1]}
    spec = [{"name": "input", "op": "input", "inputs": [], "attrs": {}}]
    for name, op, inputs in nodes:
        attrs = conv if op == "conv" else {}
        spec.append({"name": name, "op": op, "inputs": list(inputs), "attrs": attrs})
    spec += [
        {
            "name": "head.flatten",
            "op": "flatten",
            "inputs": [nodes[-1][0]],
            "attrs": {},
        },
        {
            "name": "head.fc",
            "op": "linear",
            "inputs": ["head.flatten"],
            "attrs": {"bias": True, "out_features": 10},
        },
    ]
    return arch_lib.from_dict(
        {"version": 1, "input_shape": [8, 8, 4], "num_classes": 10, "nodes": spec}
    )


def test_network_features_count_containers_and_identity_shortcuts():
    net = _tiny(
        [
            ("stem.conv", "conv", ["input"]),
            ("s0.b0.conv", "conv", ["stem.conv"]),
            ("s0.b0.add", "add", ["s0.b0.conv", "stem.conv"]),  # identity
            ("s0.b1.conv", "conv", ["s0.b0.add"]),
            ("s0.b1.short.conv", "conv", ["s0.b0.add"]),
            ("s0.b1.add", "add", ["s0.b1.conv", "s0.b1.short.conv"]),  # projection
        ]
    )
    # Containers: stem, s0, s0.b0, s0.b1, s0.b1.short, head.
    containers, shortcuts = roofline.network_features(net)
    assert (containers, shortcuts) == (6, 1)
    assert roofline.NETWORK_EXTRAS == ("containers", "shortcuts")


def test_fit_recovers_a_per_network_dispatch_cost(archs, tmp_path):
    truth = dataclasses.replace(_oracle(), network_extras={"containers": 0.05})
    y = truth.predict_many(archs)
    z = np.array([roofline.network_features(a)[0] for a in archs])
    assert np.ptp(z) > 5  # the term varies across the networks
    fitted = latency.fit(
        archs,
        y,
        tie="compact",
        extras=ORACLE_EXTRAS,
        network_extras=("containers",),
        noise_floor=0.01,
        device=PI,
    )
    assert fitted.network_extras["containers"] == pytest.approx(0.05, rel=0.1)
    np.testing.assert_allclose(fitted.predict_many(archs), y, rtol=0.02)
    fitted.save(tmp_path / "p.json")
    again = latency.load(tmp_path / "p.json")
    assert again.network_extras == fitted.network_extras
    np.testing.assert_array_equal(again.predict_many(archs), fitted.predict_many(archs))
    with pytest.raises(ValueError, match="network_extras"):
        latency.fit(archs, y, device=PI, network_extras=("modules",))
    data = json.loads((tmp_path / "p.json").read_text())
    data["network_extras"] = {"modules": 1.0}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="network_extras.modules unknown"):
        latency.load(tmp_path / "bad.json")


def _entries(archs, y, spread=0.0):
    return [
        latency.Entry(a, float(t), spread * float(t), dict(a.meta))
        for a, t in zip(archs, y, strict=True)
    ]


def test_fit_table_takes_a_term_only_when_held_out_rows_need_it(archs):
    base = latency.Options(extras=ORACLE_EXTRAS, tie="compact", noise_floor=0.01)
    moves = ["dispatch", "prior"]
    # Data with a dispatch cost per container: cross-validation picks the term.
    with_dispatch = dataclasses.replace(_oracle(), network_extras={"containers": 0.3})
    y = with_dispatch.predict_many(archs)
    chosen = latency.fit_table(_entries(archs, y), device=PI, base=base, moves=moves)
    assert "dispatch" in chosen.options.moves
    assert chosen.predictor.network_extras["containers"] == pytest.approx(0.3, rel=0.1)
    assert chosen.cv["within_10"] == 100.0
    assert latency.check_physical(chosen.predictor) == []
    # The same networks without it: no move beats the base by min_gain.
    y0 = _oracle().predict_many(archs)
    plain = latency.fit_table(_entries(archs, y0), device=PI, base=base, moves=moves)
    assert plain.options.moves == ()
    assert plain.trials[0][0] == "base" and len(plain.trials) == 3
    assert "cross-validated" in plain.report()
    assert "trials" in plain.report() and "trials" not in plain.report(trials=False)


def test_out_of_fold_never_predicts_a_network_from_its_own_repeat(archs):
    # Every architecture twice: a fit that saw the repeat would predict the
    # odd latencies exactly; out of fold it cannot.
    y = _oracle().predict_many(archs)
    noisy = y * np.where(np.arange(len(y)) % 2, 1.3, 1.0)
    entries = _entries(archs, noisy) + _entries(archs, noisy)
    base = latency.Options(extras=ORACLE_EXTRAS, tie="compact")
    pred = latency.recipe.out_of_fold(entries, base, PI, folds=3)
    first, second = pred[: len(archs)], pred[len(archs) :]
    np.testing.assert_allclose(first, second, rtol=1e-9)  # same fold, same fit


def test_derived_device_bounds_every_network_rate(archs):
    y = _oracle().predict_many(archs)
    device = latency.derive_device(archs, y)
    probe = roofline.Device("probe", 1.0, 1.0)
    for a, t in zip(archs, y, strict=True):
        f = roofline.device_features(a, "e8m23", probe)
        assert f.flops.sum() / (t / 1e3) <= device.peak_flops / 8 * (1 + 1e-12)
        assert f.bytes.sum() / (t / 1e3) <= device.peak_bandwidth / 8 * (1 + 1e-12)
    fitted = latency.fit_table(
        _entries(archs, y),
        base=latency.Options(extras=ORACLE_EXTRAS, tie="compact"),
        search=False,
    )
    assert fitted.predictor.device.name.startswith("derived from 72 measurements")
    assert latency.check_physical(fitted.predictor) == []
    assert fitted.cv["within_10"] > 90


def test_fit_table_rejects_bad_input(archs):
    with pytest.raises(ValueError, match="needs measured networks"):
        latency.fit_table([])
    with pytest.raises(ValueError, match=r"entries\[0\] is a Arch"):
        latency.fit_table(archs)
    entries = _entries(archs, _oracle().predict_many(archs))
    with pytest.raises(ValueError, match="moves \\['warp'\\]"):
        latency.fit_table(entries, device=PI, moves=["warp"])
    with pytest.raises(ValueError, match="folds=1"):
        latency.fit_table(entries, device=PI, folds=1)


def test_kernel_trees_as_json_predict_exactly_as_scikit_learn(archs):
    from sklearn.ensemble import GradientBoostingRegressor

    from jnas.latency import kernels

    keys = sorted({k for a in archs for k in kernels.conv_keys(a)})
    x = kernels.tree_features(keys)
    target = np.sin(x[:, 0]) + 0.3 * (x[:, 2] > 3) + 0.1 * x[:, 10]
    gbr = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0)
    gbr.fit(x, target)
    trees = kernels.Trees.from_sklearn(gbr)
    again = kernels.Trees.from_dict(json.loads(json.dumps(trees.to_dict())))
    np.testing.assert_array_equal(again.predict(x), gbr.predict(x))
    data = json.loads(json.dumps(trees.to_dict()))
    data["left"][0] = [*data["left"][0][:-1], 10**6]
    with pytest.raises(ValueError, match="tree 0 left out of range"):
        kernels.Trees.from_dict(data)


def _kernel_world(archs):
    """Networks dominated by convs that cost 2x when their per-group output
    channels fill 8-15 of 16 lanes: an irregularity no per-kind roofline term
    (of the oracle's) expresses."""
    from jnas.latency import kernels

    truth = _oracle()

    def conv_ms(key):
        macs, patch, out, _ = kernels._sizes(key)
        ragged = (key[1] // key[10]) % 16 >= 8
        return (1e-6 * macs + 2e-6 * patch + 0.02) * (2.0 if ragged else 1.0)

    def network_ms(a):
        rest = sum(
            t for _, kind, t, _ in truth.breakdown(a) if kind not in kernels.CONV_KINDS
        )
        return truth.network_ms + rest + sum(conv_ms(k) for k in kernels.conv_keys(a))

    times = {k: conv_ms(k) for a in archs for k in kernels.conv_keys(a)}
    return np.array([network_ms(a) for a in archs]), times


def test_kernel_predictor_learns_shape_irregularities_and_round_trips(archs, tmp_path):
    from jnas.latency import kernels

    y, conv_times = _kernel_world(archs)
    train = (np.arange(len(archs)) // len(SMALL)) % 3 != 0  # by index, every space
    tr = [a for a, t in zip(archs, train, strict=True) if t]
    te = [a for a, t in zip(archs, train, strict=True) if not t]
    whole = latency.fit(tr, y[train], device=PI, extras=ORACLE_EXTRAS, tie="compact")
    # Only the training networks' convs are timed alone.
    seen = {k: conv_times[k] for a in tr for k in kernels.conv_keys(a)}
    model = kernels.fit_kernel_predictor(tr, y[train], whole, seen)
    err_kernel = np.abs(model.predict_many(te) / y[~train] - 1)
    err_whole = np.abs(whole.predict_many(te) / y[~train] - 1)
    assert np.median(err_kernel) < 0.5 * np.median(err_whole)
    assert np.mean(err_kernel <= 0.05) > np.mean(err_whole <= 0.05)
    model.save(tmp_path / "k.json")
    loaded = latency.load(tmp_path / "k.json")
    assert isinstance(loaded, latency.KernelPredictor)
    np.testing.assert_array_equal(loaded.predict_many(te), model.predict_many(te))
    data = json.loads((tmp_path / "k.json").read_text())
    data["scale"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="scale must be a number >= 0"):
        latency.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not timed alone"):
        kernels.fit_kernel_predictor(tr, y[train], whole, {})


def test_calibration_chooses_the_kernel_level_only_when_it_cross_validates(archs):
    y, conv_times = _kernel_world(archs)
    entries = _entries(archs, y)
    base = latency.Options(extras=ORACLE_EXTRAS, tie="compact")
    result = latency.fit_table(entries, device=PI, base=base, search=False)
    chosen = calibration.choose_kernel_level(
        entries, result, PI, conv_times, log_fn=lambda _: None
    )
    assert chosen is not None and chosen[1] == "kernel"
    # Where the roofline is the truth, the kernel level is not taken.
    y0 = _oracle().predict_many(archs)
    plain = latency.fit_table(_entries(archs, y0), device=PI, base=base, search=False)
    convs = {k: 1.0 for k in conv_times}  # uninformative conv timings
    assert (
        calibration.choose_kernel_level(
            _entries(archs, y0), plain, PI, convs, log_fn=lambda _: None
        )
        is None
    )


def test_pin_threads_can_keep_the_thread_pool(monkeypatch):
    from jnas.latency import measurement

    monkeypatch.setattr(measurement, "_backend_initialised", lambda: False)
    affinity = os.sched_getaffinity(0)
    try:
        for single, expect in ((True, True), (False, False)):
            monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/dev/null")
            out = measurement.pin_threads(None, ["--x=1"], single_threaded=single)
            flags = out["xla_flags"].split()
            assert ("--xla_cpu_multi_thread_eigen=false" in flags) is expect
            assert flags[0] == "--xla_dump_to=/dev/null" and "--x=1" in flags
            assert len(os.sched_getaffinity(0)) == 1
    finally:
        os.sched_setaffinity(0, affinity)
