"""Issue 17: an explicit candidates list and the authors' recipe, setting by setting.

Each recipe setting is checked against a hand computation, not against the
code that implements it: the last partial batch, weight decay on every
parameter (BatchNorm's too), the cosine formula, PyTorch's initialisation
bounds from the kernel's own shape.
"""

import json
import math
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import nn_oracle
import numpy as np
import pytest

from experiments import reproduce
from jnas import nn, search, spaces
from jnas.data import pipeline
from jnas.population import engine
from jnas.population import step as train
from jnas.search import loop, sampling

SHARED = Path(__file__).resolve().parents[2] / "shared"
NET_CONFIGS = SHARED / "iotnets" / "NetConfigs.json"


# ---------------------------------------------------------- candidates list


def test_candidates_items_indices_ranges_and_release_rows():
    table = [
        {"spacename": "random_net_mobilenetv2", "law": "s5", "id": i} for i in (3, 0, 7)
    ] + [{"spacename": "random_net_resnext", "law": "s3", "id": 1}]
    got = sampling.parse_candidates(
        [
            "mobilenetv2:s5:37",
            "random_net_mobilenetv2:s6:2-4",
            "mobilenetv2:s5:*",
            "mobilenetv2:s5:37",
        ],
        table,
    )
    assert got == [
        ("mobilenetv2", "s5", 37),
        ("mobilenetv2", "s6", 2),
        ("mobilenetv2", "s6", 3),
        ("mobilenetv2", "s6", 4),
        ("mobilenetv2", "s5", 0),
        ("mobilenetv2", "s5", 3),
        ("mobilenetv2", "s5", 7),
    ]  # in order, each once
    archs = sampling.build_candidates(got[:2])
    assert archs[0].hash == spaces.sample("mobilenetv2", "s5", 37).hash
    assert dict(archs[1].meta) == {"space": "mobilenetv2", "law": "s6", "index": 2}


@pytest.mark.parametrize(
    "item,message",
    [
        ("mobilenetv2:s5", r"'mobilenetv2:s5' must be 'space:law:index'"),
        ("vgg:s1:0", r"'vgg:s1:0': unknown space 'vgg'; allowed: mobilenetv2"),
        ("mobilenetv2:s7:0", r"unknown law 's7' of mobilenetv2; allowed: s1, s2"),
        ("mobilenetv2:s5:-1", r"the index must be an integer >= 0, a range A-B or \*"),
        ("mobilenetv2:s5:4-2", r"range 4-2 is empty"),
        ("mobilenetv2:s5:*", r"set config.search.netconfigs"),
    ],
)
def test_bad_candidates_items_are_named(item, message):
    config = reproduce.get_config("phase1")
    config.search.candidates = (item,)
    with pytest.raises(ValueError, match=message):
        search.validate(config)


def test_candidates_refuse_narrowing_and_name_unbuildable_indices():
    config = reproduce.get_config("phase1")
    config.search.mode = "narrow"
    with pytest.raises(ValueError, match=r"needs search.mode='random'"):
        search.validate(config)
    # DenseNet s2 sample 41 floors a transition to zero channels.
    with pytest.raises(ValueError, match=r"densenet:s2:41 cannot be built: .*0 chan"):
        sampling.build_candidates([("densenet", "s2", i) for i in (40, 41)])


def test_every_released_configuration_is_a_candidate():
    if not NET_CONFIGS.exists():
        pytest.skip(f"{NET_CONFIGS} absent (CI places the checkout beside shared/)")
    rows = json.loads(NET_CONFIGS.read_text())
    config = reproduce.get_config("phase1")
    laws = sorted({(r["spacename"], r["law"]) for r in rows})
    config.search.candidates = tuple(f"{s}:{law}:*" for s, law in laws)
    config.search.netconfigs = str(NET_CONFIGS)
    search.validate(config)
    archs = loop._explicit_candidates(config)
    assert len(archs) == len(rows) == 1617
    metas = [dict(a.meta) for a in archs]
    assert {(m["space"], m["law"], m["index"]) for m in metas} == {
        (spaces.canonical(r["spacename"]), r["law"], r["id"]) for r in rows
    }


# ---------------------------------------------------------- the recipe


def test_reproduce_config_states_the_recipe():
    c = reproduce.get_config("phase1")
    assert len(c.search.candidates) == 24 and c.search.candidates[0] == (
        "mobilenetv2:s4:0"
    )
    assert (c.train.lr, c.train.momentum, c.train.weight_decay) == (0.1, 0.9, 5e-4)
    assert (c.train.batch_size, c.train.last_batch, c.train.schedule) == (
        128,
        "keep",
        "cosine",
    )
    assert c.train.steps == 5 * 391 and c.data.num_val == 0 and c.train.augment
    assert c.data.mean == (0.4914, 0.4822, 0.4465)
    assert c.data.std == (0.2023, 0.1994, 0.2010)
    assert reproduce.get_config("phase2").train.steps == 30 * 391
    with pytest.raises(ValueError, match="unknown reproduce variant 'x'"):
        reproduce.get_config("x")


def test_last_partial_batch_is_kept_every_epoch():
    # 50,000 images in batches of 128: 390 full batches and one of 80.
    assert pipeline.batch_shapes(50_000, 128, True) == (391, 80)
    assert pipeline.batch_shapes(50_000, 128, False) == (390, 128)
    stats = types.SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3)
    images = np.zeros((10, 2, 2, 3), np.uint8)
    ds = pipeline.put_on_device(images, np.arange(10), stats)
    batches = [
        np.asarray(labels)
        for _, labels in pipeline.iterate(
            ds,
            jax.random.key(1),
            batch_size=4,
            num_steps=6,
            augment=False,
            keep_last=True,
        )
    ]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):  # every example once per epoch
        assert sorted(np.concatenate(epoch)) == list(range(10))
    assert not np.array_equal(np.concatenate(batches[:3]), np.concatenate(batches[3:]))


def test_train_bucket_feeds_the_partial_batch_at_each_epoch_end():
    seen = []

    class Recorder:  # a trainer that records the batch sizes it is given
        bucket = types.SimpleNamespace(size=1)

        def step(self, images, labels):
            seen.append(images.shape[0])
            return {
                "loss": jnp.zeros(1),
                "correct": jnp.zeros(1, jnp.int32),
                "count": jnp.full(1, images.shape[0], jnp.int32),
                "active": jnp.ones(1, jnp.int32),
            }

    stats = types.SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3)
    ds = pipeline.put_on_device(np.zeros((10, 2, 2, 3), np.uint8), np.arange(10), stats)
    engine.train_bucket(
        Recorder(),
        ds,
        steps=7,
        batch_size=4,
        data_key=jax.random.key(0),
        log_every=100,
        augment=False,
        keep_last=True,
    )
    assert seen == [4, 4, 2, 4, 4, 2, 4]


def _tiny_net_and_variables():
    net = spaces.sample("mobilenetv2", "s6", 27)
    model = nn.create_model(net)
    return net, model, nn.init(model, jax.random.key(3))


def test_sgd_with_weight_decay_on_every_parameter_by_hand():
    # PyTorch SGD (momentum 0.9, dampening 0, no Nesterov, weight_decay 5e-4):
    # d = g + wd * p; buf = d (first step), buf = 0.9 buf + d; p -= lr * buf,
    # with lr = 0.1 * (1 + cos(pi t / T)) / 2.
    # A small IR with every op (convs with and without bias, grouped and
    # depthwise, BatchNorm, linear): seconds to compile, unlike a real network.
    net = nn_oracle.tiny_arch()
    model = nn.create_model(net)
    variables = nn.init(model, jax.random.key(3))
    total, lr0, wd = 10, 0.1, 5e-4
    tx = train.make_optimizer(momentum=0.9, weight_decay=wd)
    schedule = train.make_schedule("cosine", total)
    state = train.create_state(variables, tx=tx, lr=lr0, key=jax.random.key(0))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(8, *net.input_shape)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)

    @jax.jit
    def grads_of(params, stats):
        def loss(p):
            logits, _ = nn.apply(
                model, {"params": p, "batch_stats": stats}, images, train=True
            )
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(logp[jnp.arange(8), labels])

        return jax.grad(loss)(params)

    step = jax.jit(
        lambda s, x, y: train.train_step(s, x, y, model=model, tx=tx, schedule=schedule)
    )
    params = jax.tree.map(np.asarray, variables["params"])
    buf = None
    for t in range(2):
        g = jax.tree.map(np.asarray, grads_of(state.params, state.batch_stats))
        d = jax.tree.map(lambda gi, pi: gi + wd * pi, g, params)
        buf = d if buf is None else jax.tree.map(lambda b, di: 0.9 * b + di, buf, d)
        lr = lr0 * (1 + math.cos(math.pi * t / total)) / 2
        params = jax.tree.map(lambda p, b, lr=lr: p - lr * b, params, buf)
        state, _ = step(state, images, labels)
    got = jax.tree.map(np.asarray, state.params)
    bn = [n.name for n in net.nodes if n.op == "batchnorm"]
    assert bn and all("scale" in got[k] and "bias" in got[k] for k in bn)
    for want, have in zip(jax.tree.leaves(params), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=1e-7)
    # Weight decay reached the BatchNorm scales (all 1 at init, so a scale
    # with zero gradient would move by exactly lr * wd).
    assert any(not np.all(got[k]["scale"] == 1.0) for k in bn)


def test_pytorch_initialisation_bounds_and_batchnorm_settings_by_hand():
    # kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + a^2)), bound gain *
    # sqrt(3 / fan_in) = 1 / sqrt(fan_in); the bias rule gives the same bound.
    # fan_in from the kernel's own shape (kh, kw, C_in / groups, C_out).
    net, _, variables = _tiny_net_and_variables()
    convs = 0
    for name, leaves in variables["params"].items():
        if "kernel" not in leaves:
            continue
        kernel = np.asarray(leaves["kernel"])
        fan_in = int(np.prod(kernel.shape[:-1]))
        a = math.sqrt(5)
        bound = math.sqrt(2 / (1 + a * a)) * math.sqrt(3 / fan_in)
        for leaf in leaves.values():
            leaf = np.abs(np.asarray(leaf))
            assert leaf.max() <= bound * (1 + 1e-6), name
            if leaf.size >= 32:  # a uniform draw reaches near its bound
                assert leaf.max() > 0.8 * bound, name
        convs += 1
    assert convs > 5
    for node in net.nodes:
        if node.op == "batchnorm":
            assert dict(node.attrs) == {"eps": 1e-5, "momentum": 0.1}


def test_search_trains_all_data_keeps_the_last_batch_and_reports_test(tmp_path):
    # The recipe end to end on the bundled digits (CIFAR-10 is the real
    # run's): no validation split, the fixed normalisation, two epochs of
    # 3 steps each whose last batch is partial; float32 and half on test.
    config = reproduce.get_config("tiny")
    config.search.candidates = ("mobilenetv2:s6:27",)
    config.data.name = "digits"
    config.data.fit = "resize"
    config.data.max_train = 300  # 2 full batches of 128 and one of 44
    config.train.steps = 6
    config.train.augment = False
    config.latency.predictor = "none"
    config.checkpoints = False
    (record,) = search.run(config, tmp_path)
    assert record["index"] == 27 and record["law"] == "s6"
    acc = record["accuracy"]
    assert acc["float32"]["val"] is None and acc["custom"]["test"] is None
    assert 0.0 <= acc["float32"]["test"] <= 1.0 and acc["half"]["test"] is not None
    assert record["custom_format"] is None and record["train"]["steps"] == 6
    assert not record["train"]["diverged"]
    lines = (tmp_path / "curves.jsonl").read_text().splitlines()
    curves = [json.loads(line) for line in lines]
    assert [c["step"] for c in curves] == [1, 3, 6]


# ---------------------------------------------------------- the comparison


def _record(law, index, acc, seconds=10.0):
    return {
        "space": "mobilenetv2",
        "law": law,
        "index": index,
        "accuracy": {"float32": {"test": acc}},
        "train": {"diverged": False, "seconds": seconds},
    }


def test_release_comparison_tables_by_hand():
    from jnas.report import release

    table = [
        {
            "spacename": "random_net_mobilenetv2",
            "law": law,
            "id": i,
            "acc": acc,
            "params": params,
        }
        for law, i, acc, params in [
            ("s5", 0, 0.60, 500),
            ("s5", 1, 0.70, 400),
            ("s5", 2, 0.65, 600),
            ("s6", 0, 0.40, 100),
            ("s6", 1, 0.52, 300),
            ("s6", 2, 0.45, 200),
        ]
    ]
    # Within s5 ours ranks 1 < 2 < 0 (released: 0 < 2 < 1): d = (2, -2, 0),
    # rho = 1 - 6 * 8 / (3 * 8) = -1;
    # within s6 the same order as released: rho = 1.
    seed0 = [
        _record("s5", 0, 0.71),
        _record("s5", 1, 0.69),
        _record("s5", 2, 0.70),
        _record("s6", 0, 0.30),
        _record("s6", 1, 0.37),
        _record("s6", 2, 0.33),
    ]
    seed1 = [_record("s5", 0, 0.73)]
    rows = release.compare([seed0, seed1], table)
    assert [(r.law, r.index) for r in rows][:2] == [("s5", 0), ("s5", 1)]
    assert rows[0].accuracy == (0.71, 0.73) and rows[1].accuracy == (0.69, None)
    c = release.correlations(rows)
    assert c["mobilenetv2 s5"]["ours"] == pytest.approx(-1.0)
    assert c["mobilenetv2 s6"]["ours"] == pytest.approx(1.0)
    assert c["mobilenetv2 s6"]["params"] == pytest.approx(1.0)  # 100 < 200 < 300
    assert c["mobilenetv2 s5"]["params"] == pytest.approx(-0.5)
    # Law-centred by hand: ours - law mean and released - law mean, pooled.
    ours = np.array([0.71, 0.69, 0.70, 0.30, 0.37, 0.33])
    rel = np.array([0.60, 0.70, 0.65, 0.40, 0.52, 0.45])
    for v in (ours, rel):  # no ties after centring
        v[:3] -= v[:3].mean()
        v[3:] -= v[3:].mean()
    ranks = lambda v: np.argsort(np.argsort(v))
    want = np.corrcoef(ranks(ours), ranks(rel))[0, 1]
    assert c["law-centred"]["ours"] == pytest.approx(want)
    text = release.markdown(rows, ["seed 0", "seed 1"])
    row = "| mobilenetv2:s5:0 | 500 | 71.00 | 73.00 | 72.00 | 1.41 | 60.00 | +11.00 |"
    assert row + " 10 |" in text
    # A law with fewer than 3 networks has no rank correlation, said in words.
    two = release.markdown(release.compare([seed0[:2] + seed0[3:]], table), ["seed 0"])
    assert "| mobilenetv2 s5 | 2 | n/a (fewer than 3) | n/a (fewer than 3) |" in two
    assert "nan" not in two
    with pytest.raises(ValueError, match="mobilenetv2:s4:9 is not in the release"):
        release.compare([[_record("s4", 9, 0.5)]], table)


def test_max_train_is_a_stratified_subset(tmp_path, monkeypatch):
    # Image folders are read sorted by class: the first N would be one class.
    from test_data import make_folder

    monkeypatch.setenv("JNAS_CACHE_DIR", str(tmp_path / "cache"))
    make_folder(tmp_path / "ds", counts={"train": 10, "test": 2}, size=32)
    config = reproduce.get_config("tiny")
    config.data.name = "toy"
    config.data.data_dir = str(tmp_path / "ds")
    config.data.max_train = 6
    small, meta = search.load_data(config)
    labels = np.asarray(small["train"].labels)
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]
    assert meta.mean == config.data.mean and meta.std == config.data.std
    assert "val" not in small and small["test"].labels.shape == (6,)


def test_format_fronts_choose_on_one_half_and_report_the_other():
    from jnas import cost
    from jnas.report import fronts

    small = spaces.sample("mobilenetv2", "s6", 27)  # 1241 params
    big = spaces.sample("mobilenetv2", "s5", 37)  # 3698 params
    records = [
        {
            "hash": a.hash,
            "space": "mobilenetv2",
            "law": law,
            "index": i,
            "arch": a.to_dict(meta=False),
        }
        for a, law, i in ((small, "s6", 27), (big, "s5", 37))
    ]
    rows = [
        # small: e4m3 (8 bits) within 1 point of float32 on test_a -> custom
        {"hash": small.hash, "format": "float32", "test_a": 0.50, "test_b": 0.52},
        {"hash": small.hash, "format": "e5m10", "test_a": 0.50, "test_b": 0.51},
        {"hash": small.hash, "format": "e4m3", "test_a": 0.495, "test_b": 0.40},
        {"hash": small.hash, "format": "e3m2", "test_a": 0.30, "test_b": 0.60},
        # big: nothing under 16 bits within 1 point
        {"hash": big.hash, "format": "float32", "test_a": 0.70, "test_b": 0.69},
        {"hash": big.hash, "format": "e5m10", "test_a": 0.70, "test_b": 0.68},
        {"hash": big.hash, "format": "e4m3", "test_a": 0.60, "test_b": 0.70},
    ]
    pts = fronts.points(records, rows, select="test_a", report="test_b")
    got = {(p.name, p.kind): (p.fmt, p.memory_bytes, p.accuracy) for p in pts}
    # Memory by hand: ceil(params * bits / 8), the release's params.
    n_small, n_big = cost.params(small), cost.params(big)
    assert got["mobilenetv2:s6:27", "custom"] == ("e4m3", n_small, 0.40)
    assert got["mobilenetv2:s6:27", "half"] == ("e5m10", 2 * n_small, 0.51)
    assert got["mobilenetv2:s5:37", "custom"] == ("e5m10", 2 * n_big, 0.68)
    assert got["mobilenetv2:s5:37", "float32"] == ("float32", 4 * n_big, 0.69)
    # At 2 x 3698 B the big network fits only in half (+16 points over the
    # small one in float32); at 4 x 1241 B only the small one fits.
    table = fronts.front_table(pts, [4 * n_small, 2 * n_big])
    lines = table.splitlines()
    assert "52.00% mobilenetv2:s6:27 (float32" in lines[2]
    assert "68.00% mobilenetv2:s5:37 (e5m10" in lines[3] and "+16.00" in lines[3]
    with pytest.raises(ValueError, match="has no 'test_a' accuracy"):
        fronts.points(
            records,
            [{"hash": small.hash, "format": "float32"}],
            select="test_a",
            report="test_b",
        )


def test_qat_table_sets_qat_against_post_training_rounding_by_hand():
    from jnas.report import fronts

    def record(law, index, h):
        return {"hash": h, "space": "mobilenetv2", "law": law, "index": index}

    def row(h, fmt, b):
        return {"hash": h, "format": fmt, "test_a": 0.0, "test_b": b}

    # Rows are keyed by each run's own record hashes (different here, to show
    # that the two runs are joined by "space:law:index", not by hash).
    base = [record("s6", 30, "a"), record("s5", 31, "b"), record("s5", 0, "c")]
    base_rows = [
        row("a", "float32", 0.47),
        row("a", "e4m3", 0.44),
        row("b", "float32", 0.52),
        row("b", "e4m3", 0.50),
        row("c", "float32", 0.42),  # no e4m3 row: left out
    ]
    qat = [record("s6", 30, "q1"), record("s5", 31, "q2"), record("s5", 0, "q3")]
    qat_rows = [row("q1", "e4m3", 0.46), row("q2", "e4m3", 0.4925)]
    text = fronts.qat_table(base, base_rows, qat, qat_rows, "e4m3", report="test_b")
    lines = text.splitlines()
    assert "post-training e4m3 | QAT in e4m3" in lines[0]
    assert lines[2:] == [
        "| mobilenetv2:s5:31 | 52.00% | 50.00% | 49.25% | -0.75 | -2.75 |",
        "| mobilenetv2:s6:30 | 47.00% | 44.00% | 46.00% | +2.00 | -1.00 |",
    ]
    with pytest.raises(ValueError, match=r"QAT networks: mobilenetv2:s5:0"):
        fronts.qat_table(base, base_rows, qat[2:], qat_rows, "e4m3", report="test_b")


def test_fronts_launcher_adds_the_qat_table_and_names_a_non_qat_workdir(tmp_path):
    import subprocess
    import sys

    arch = spaces.sample("mobilenetv2", "s6", 30)

    def workdir(name, train, rows):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"train": train}))
        rec = {
            "hash": arch.hash,
            "space": "mobilenetv2",
            "law": "s6",
            "index": 30,
            "arch": arch.to_dict(meta=False),
        }
        (d / "results.jsonl").write_text(json.dumps(rec) + "\n")
        lines = [
            json.dumps({"hash": arch.hash, "format": f, "test_a": a, "test_b": b})
            for f, a, b in rows
        ]
        (d / "formats.jsonl").write_text("\n".join(lines) + "\n")
        return d

    base = workdir(
        "base",
        {"qat_format": ""},
        [("float32", 0.47, 0.47), ("e5m10", 0.47, 0.47), ("e4m3", 0.45, 0.44)],
    )
    qat = workdir("qat", {"qat_format": "e4m3"}, [("e4m3", 0.46, 0.46)])

    def fronts(*flags):
        return subprocess.run(
            [sys.executable, "-m", "launch.fronts", f"--workdir={base}", *flags],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = fronts(f"--qat_workdir={qat}")
    assert done.returncode == 0, done.stderr[-2000:]
    text = (base / "fronts.md").read_text()
    assert "in e4m3, accuracies on test_b" in text
    assert "| mobilenetv2:s6:30 | 47.00% | 44.00% | 46.00% | +2.00 | -1.00 |" in text
    bad = fronts(f"--qat_workdir={base}")
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        f"fronts.py: error: --qat_workdir={base} was not trained with train.qat_format"
    )


def test_split_test_halves_are_stratified_and_disjoint():
    from jnas.search import posttraining

    stats = types.SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3)
    labels = np.repeat(np.arange(4), 10)
    images = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 2, 2, 3), np.uint8
    )
    halves = posttraining.split_test_halves(
        pipeline.put_on_device(images, labels, stats), stats
    )
    a, b = (np.asarray(halves[k].images)[:, 0, 0, 0] for k in ("test_a", "test_b"))
    assert len(a) == len(b) == 20 and sorted(np.concatenate([a, b])) == list(range(40))
    for half in ("test_a", "test_b"):
        assert list(np.bincount(np.asarray(halves[half].labels))) == [5] * 4
