"""jnas.nn: counts against the cost model, forward passes of every space, and
exactness against independent NumPy oracles (tests/nn_oracle.py).

Compiles are the cost here (~1-4 s per network on CPU), so each space's
smallest law is compiled once per mode and the batch-1 eval program is shared
between the forward-pass and the XLA cost-analysis tests.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas import arch, cost, nn, nn_ops, precision, spaces

try:  # tests/ is put on sys.path by pytest's default (prepend) import mode
    import nn_oracle
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests import nn_oracle

SMALLEST_LAW = {
    "mobilenetv2": "s6",
    "resnet": "s5",
    "resnext": "s3",
    "densenet": "s3",
    "googlenet": "s6",
    "pnasnet": "s3",
    "probenet_s": "s2",
}
# As the test vectors of search-spaces.md 12.1: id 0 of every law, id 1 of the
# first (largest) law. Counted through jax.eval_shape: s1 networks are big.
COUNT_CASES = [
    (space, law, index)
    for space in spaces.names()
    for i, law in enumerate(spaces.laws(space))
    for index in ((0, 1) if i == 0 else (0,))
]
# XLA's 'flops' of the batch-1 eval forward over cost.macs (see the test). Index 0
# of all 30 laws measured 1.58 (ProbeNet-s: 7-tap kernels on 4x4 maps, mostly
# padding) to 2.35 (GoogLeNet s6: tiny convs, so elementwise ops weigh more).
XLA_RATIO_BAND = (1.5, 2.5)
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@pytest.fixture(autouse=True)
def _exact_matmuls():
    # GPUs default to TF32 convolutions; the oracles here compare at ~1e-5.
    with jax.default_matmul_precision("highest"):
        yield


def _abstract_init(model: nn.Net):
    return jax.eval_shape(lambda key: nn.init(model, key), jax.random.key(0))


def _check_counts(net: arch.Arch) -> None:
    variables = _abstract_init(nn.create_model(net))
    params, stats = variables["params"], variables["batch_stats"]
    for c in cost.node_costs(net):  # node by node, so a failure names the node
        own = params.get(c.name, {})
        n_params = sum(int(np.prod(v.shape)) for v in own.values())
        n_stats = sum(int(np.prod(v.shape)) for v in stats.get(c.name, {}).values())
        if c.op == "batchnorm":  # flax keeps no batch counter: 4C + 1 - 1
            want = (c.trainable, c.params - 1 - c.trainable)
            assert (n_params, n_stats) == want, c.name
        else:
            assert (n_params, n_stats) == (c.params, 0), c.name
    n_bn = sum(node.op == "batchnorm" for node in net.nodes)
    counts = nn.param_count(variables)
    assert counts["total"] == cost.params(net) - n_bn
    assert counts["params"] == cost.trainable_params(net)


@pytest.mark.parametrize("space, law, index", COUNT_CASES)
def test_counts_match_the_cost_model(space, law, index):
    _check_counts(spaces.sample(space, law, index))


@pytest.mark.parametrize("name", ["ProbeNet_s", "PNASNetA", "ResNeXt29_32x4d"])
def test_counts_of_reference_models(name):
    _check_counts(spaces.reference(name))


@functools.cache
def _space_setup(space: str):
    """(arch, model, variables) of the smallest law's sample 0 of ``space``."""
    net = spaces.sample(space, SMALLEST_LAW[space], 0)
    model = nn.create_model(net)
    return net, model, nn.init(model, jax.random.key(0))


@functools.cache
def _compiled_eval_batch1(space: str):
    net, model, variables = _space_setup(space)
    x = jnp.zeros((1, *net.input_shape))
    fwd = jax.jit(lambda v, x: nn.apply(model, v, x))
    return fwd.lower(variables, x).compile()


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("space", list(SMALLEST_LAW))
def test_forward_of_every_space(space, batch, train):
    net, model, variables = _space_setup(space)
    x = jax.random.normal(jax.random.key(batch), (batch, *net.input_shape))
    if not train and batch == 1:
        logits = _compiled_eval_batch1(space)(variables, x)
    else:
        fwd = jax.jit(lambda v, x: nn.apply(model, v, x, train=train))
        # LLVM -O0 halves the compile time; the program is the same HLO.
        logits = fwd.lower(variables, x).compile(FAST_COMPILE)(variables, x)
    if train:
        logits, stats = logits
        assert jax.tree.structure(stats) == jax.tree.structure(variables["batch_stats"])
        assert all(np.isfinite(s).all() for s in jax.tree.leaves(stats))
    assert logits.shape == (batch, 10) and logits.dtype == jnp.float32
    assert np.isfinite(logits).all()


def _valid_taps(n_in: int, n_out: int, k: int, s: int, p: int) -> int:
    """(output position, kernel tap) pairs of one axis that read real input."""
    return sum(0 <= o * s - p + t < n_in for o in range(n_out) for t in range(k))


def _valid_macs(net: arch.Arch) -> int:
    """MACs that do not multiply zero padding (XLA's conv flops skip those)."""
    total = 0
    for node in net.nodes:
        if node.op == "conv":
            h, w, c = net.shapes[node.inputs[0]]
            ho, wo, c_out = net.shapes[node.name]
            (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
            ph, pw = node.attr("padding")
            taps = _valid_taps(h, ho, kh, sh, ph) * _valid_taps(w, wo, kw, sw, pw)
            total += taps * (c // net.groups(node)) * c_out
        elif node.op == "linear":
            total += net.shapes[node.inputs[0]][0] * node.attr("out_features")
    return total


def _elementwise_work(net: arch.Arch) -> int:
    """Elements touched by everything but convs/linear products: BN, ReLU,
    add, biases, and every window element read by a pool."""
    total = 0
    for node in net.nodes:
        out = int(np.prod(net.shapes[node.name]))
        if node.op in ("batchnorm", "relu", "add", "linear"):
            total += out * max(1, len(node.inputs) - 1)
        elif node.op == "conv" and node.attr("bias"):
            total += out
        elif node.op in ("maxpool", "avgpool"):
            total += out * (int(np.prod(node.attr("kernel"))) + 1)
    return total


@pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="flop accounting measured on XLA:CPU"
)
@pytest.mark.parametrize("space", list(SMALLEST_LAW))
def test_xla_flops_agree_with_the_cost_model(space, record_property):
    """XLA's cost analysis of the compiled batch-1 eval forward vs cost.macs.

    XLA counts a multiply-add as 2 flops but skips kernel taps that fall in the
    zero padding (so 2 * valid MACs <= flops: below 2 * MACs for large kernels
    on small maps, e.g. PNASNet's 7x7 on 8x8), and adds a few flops per element
    of BN (2-3), ReLU, add, bias (1 each) and pool windows. The padding-aware
    bounds follow from that; the ratio band is the coarse, per-space summary.
    """
    net = _space_setup(space)[0]
    analysis = _compiled_eval_batch1(space).cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per device program
        analysis = analysis[0]
    flops, macs = analysis["flops"], cost.macs(net)
    ratio = flops / macs
    record_property("xla_flops_over_macs", round(ratio, 4))
    print(
        f"{space} {SMALLEST_LAW[space]} id 0: macs={macs} xla_flops={flops:.0f} "
        f"ratio={ratio:.4f}"
    )
    valid = _valid_macs(net)
    assert 2 * valid <= flops <= 2 * valid + 4 * _elementwise_work(net)
    assert XLA_RATIO_BAND[0] <= ratio <= XLA_RATIO_BAND[1]


def test_matches_the_numpy_oracle_node_by_node():
    net = nn_oracle.tiny_arch()
    model = nn.create_model(net)
    variables = nn_oracle.random_variables(nn.init(model, jax.random.key(0)), seed=1)
    x = np.random.default_rng(2).normal(size=(2, *net.input_shape)).astype(np.float32)
    _, state = model.apply(variables, x, mutable=["intermediates"])
    got = state["intermediates"]["node_outputs"][0]
    want = nn_oracle.forward(net, jax.tree.map(np.asarray, variables), x)
    for node in net.nodes:
        np.testing.assert_allclose(
            got[node.name], want[node.name], rtol=1e-5, atol=1e-5, err_msg=node.name
        )


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_train_step_follows_pytorch(momentum):
    net = nn_oracle.conv_bn_arch(momentum)
    model = nn.create_model(net)
    variables = nn_oracle.random_variables(nn.init(model, jax.random.key(0)), seed=3)
    x = np.random.default_rng(4).normal(size=(3, *net.input_shape)).astype(np.float32)
    _, state = model.apply(
        variables, x, train=True, mutable=["batch_stats", "intermediates"]
    )
    outputs = state["intermediates"]["node_outputs"][0]
    conv = np.asarray(outputs["conv"], np.float64)
    old = jax.tree.map(np.asarray, variables["batch_stats"]["bn"])
    mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2), ddof=1)
    new = state["batch_stats"]["bn"]
    m = momentum
    want_mean, want_var = (
        (1 - m) * old["mean"] + m * mean,
        (1 - m) * old["var"] + m * var,
    )
    np.testing.assert_allclose(new["mean"], want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["var"], want_var, rtol=1e-5, atol=1e-6)
    # The output itself is normalised with the biased batch variance.
    p = variables["params"]["bn"]
    biased = conv.var(axis=(0, 1, 2))
    want = (conv - mean) / np.sqrt(biased + 1e-5) * p["scale"] + p["bias"]
    np.testing.assert_allclose(outputs["bn"], want, rtol=1e-4, atol=1e-5)


def _quantized(tree, fmt):
    return jax.tree.map(lambda v: precision.quantize(jnp.asarray(v), fmt), tree)


def test_quantized_weights_are_what_the_layers_see():
    net = nn_oracle.conv_bn_arch()
    variables = nn_oracle.random_variables(
        nn.init(nn.create_model(net), jax.random.key(0)), seed=5
    )
    plain, quant = nn.create_model(net), nn.create_model(net, weight_format="e4m3")
    rounded = _quantized(variables, "e4m3")
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), variables, rounded)
    assert any(jax.tree.leaves(changed))
    x = np.random.default_rng(6).normal(size=(2, *net.input_shape)).astype(np.float32)

    def loss(model, params, stats):  # train mode: batch statistics, not rounded
        logits, _ = nn.apply(
            model, {"params": params, "batch_stats": stats}, x, train=True
        )
        return jnp.sum(jnp.sin(logits))

    @jax.jit
    def run(v, r):
        stats = v["batch_stats"]
        return (
            nn.apply(quant, v, x),  # eval reads every stored value rounded,
            nn.apply(plain, r, x),  # running statistics included
            jax.grad(functools.partial(loss, quant))(v["params"], stats),
            jax.grad(functools.partial(loss, plain))(r["params"], stats),
        )

    got, want, grad_q, grad_p = run(variables, rounded)
    np.testing.assert_array_equal(got, want)
    # The gradient passes straight through the rounding.
    for (path, gq), gp in zip(
        jax.tree.leaves_with_path(grad_q), jax.tree.leaves(grad_p), strict=True
    ):
        np.testing.assert_allclose(gq, gp, rtol=1e-6, atol=1e-7, err_msg=str(path))
        assert np.any(gq != 0), path


def test_activation_format_rounds_every_node_output():
    net = nn_oracle.tiny_arch()
    plain, model = nn.create_model(net), nn.create_model(net, activation_format="e5m2")
    variables = nn_oracle.random_variables(nn.init(model, jax.random.key(0)), seed=7)
    x = np.random.default_rng(8).normal(size=(2, *net.input_shape)).astype(np.float32)

    @jax.jit
    def run(v):
        logits, state = model.apply(v, x, mutable=["intermediates"])
        outputs = state["intermediates"]["node_outputs"][0]
        rounded = jax.tree.map(lambda y: precision.quantize(y, "e5m2"), outputs)
        return logits, outputs, rounded, nn.apply(plain, v, x)

    logits, outputs, rounded, want = run(variables)
    for name in outputs:
        np.testing.assert_array_equal(outputs[name], rounded[name], err_msg=name)
    assert not np.array_equal(logits, want)
    np.testing.assert_allclose(logits, want, rtol=0.5, atol=0.5)  # same network


def test_stochastic_rounding_uses_the_key():
    net = nn_oracle.conv_bn_arch()
    model = nn.create_model(
        net, weight_format="e3m2", activation_format="e4m3", rounding="stochastic"
    )
    variables = nn.init(model, jax.random.key(0))
    x = np.random.default_rng(9).normal(size=(2, *net.input_shape)).astype(np.float32)
    fwd = jax.jit(lambda key: nn.apply(model, variables, x, key=key))
    a, b = fwd(jax.random.key(1)), fwd(jax.random.key(2))
    np.testing.assert_array_equal(a, fwd(jax.random.key(1)))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "opts",
    # e5m10 does not fit a bfloat16 carrier: rounded in float32, then cast.
    [{}, {"weight_format": "e5m10", "activation_format": "e4m3"}],
    ids=["plain", "quantized"],
)
def test_bfloat16_compute(opts):
    net = nn_oracle.conv_bn_arch()
    x = np.random.default_rng(10).normal(size=(2, *net.input_shape)).astype(np.float32)
    model32, model = (
        nn.create_model(net),
        nn.create_model(net, dtype=jnp.bfloat16, **opts),
    )
    variables = nn.init(model, jax.random.key(0))
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))

    @jax.jit
    def run(v):
        _, stats = nn.apply(model, v, x, train=True)
        return nn.apply(model, v, x), stats, nn.apply(model32, v, x)

    logits, stats, want = run(variables)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(stats))
    assert logits.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(logits, np.float32), want, atol=0.1)


def test_jitted_forward_traces_once():
    net = nn_oracle.tiny_arch()
    model = nn.create_model(net)
    traces = []

    def step(variables, x):
        traces.append(None)  # runs only while tracing
        logits, stats = nn.apply(model, variables, x, train=True)
        return logits, {"params": variables["params"], "batch_stats": stats}

    step = jax.jit(step)
    variables = nn.init(model, jax.random.key(0))
    for seed in range(3):  # new inputs and new (updated) variables each call
        x = jax.random.normal(jax.random.key(seed), (4, *net.input_shape))
        _, variables = step(variables, x)
    assert len(traces) == 1


def test_vmap_over_stacked_variables_of_one_arch():
    net = nn_oracle.tiny_arch()
    model = nn.create_model(net)
    keys = jax.random.split(jax.random.key(0), 2)
    stacked = jax.vmap(lambda key: nn.init(model, key))(keys)
    singles = [nn.init(model, key) for key in keys]
    for i, single in enumerate(singles):
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(stacked), strict=True):
            np.testing.assert_array_equal(a, b[i])
    x = jax.random.normal(jax.random.key(3), (4, *net.input_shape))
    fwd = functools.partial(nn.apply, model, x=x, train=True)
    (logits, stats), singles_out = jax.jit(
        lambda st, sg: (jax.vmap(fwd)(st), [fwd(v) for v in sg])
    )(stacked, singles)
    for i, (want_logits, want_stats) in enumerate(singles_out):
        np.testing.assert_allclose(logits[i], want_logits, rtol=1e-5, atol=1e-6)
        for a, b in zip(
            jax.tree.leaves(stats), jax.tree.leaves(want_stats), strict=True
        ):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0], logits[1])  # two different initialisations


def test_init_is_pytorch_default():
    net = nn_oracle.tiny_arch()
    variables = nn.init(nn.create_model(net), jax.random.key(0))
    params = variables["params"]
    for name in ("c1", "c2", "c3", "fc"):
        bound = 1 / np.sqrt(nn_ops.fan_in(net, net.node(name)))
        for leaf in params[name].values():
            assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.5 * bound
    assert nn_ops.fan_in(net, net.node("c1")) == 2 * 9  # 4 channels in 2 groups
    assert nn_ops.fan_in(net, net.node("c2")) == 3  # depthwise 3x1
    np.testing.assert_array_equal(params["bn"]["scale"], 1)
    np.testing.assert_array_equal(params["bn"]["bias"], 0)
    np.testing.assert_array_equal(variables["batch_stats"]["bn"]["mean"], 0)
    np.testing.assert_array_equal(variables["batch_stats"]["bn"]["var"], 1)


@pytest.mark.parametrize("space", ["resnext", "mobilenetv2", "pnasnet"])
def test_init_has_flax_structure_and_pytorch_scales(space):
    # `nn.init` builds the variables from the IR; flax's own init of the same
    # module (which traces the forward pass) must agree on names, shapes and
    # dtypes, and the values must be PyTorch's U(-b, b) per tensor.
    net = spaces.sample(space, "s3" if space != "mobilenetv2" else "s6", 3)
    model = nn.create_model(net)
    x = jnp.zeros((1, *net.input_shape))
    want = jax.eval_shape(lambda k: model.init(k, x), jax.random.key(0))
    want = {c: want.get(c, {}) for c in nn.COLLECTIONS}
    got = nn.init(model, jax.random.key(7))
    shape = jax.tree.map(lambda a: (a.shape, a.dtype), got)
    assert shape == jax.tree.map(lambda a: (a.shape, a.dtype), want)
    for name in nn_ops.weight_shapes(net):
        bound = 1 / np.sqrt(nn_ops.fan_in(net, net.node(name)))
        for leaf in got["params"][name].values():
            assert 0 < np.abs(leaf).max() <= bound
    again, other = (nn.init(model, jax.random.key(k)) for k in (7, 8))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    first = next(iter(nn_ops.weight_shapes(net)))
    assert not np.array_equal(
        got["params"][first]["kernel"], other["params"][first]["kernel"]
    )
    # Each tensor has its own slice of the draw: the values scaled back to
    # U(-1, 1) are (up to a few chance collisions) all distinct.
    scaled = np.concatenate(
        [
            np.ravel(leaf) * np.sqrt(nn_ops.fan_in(net, net.node(name)))
            for name in nn_ops.weight_shapes(net)
            for leaf in got["params"][name].values()
        ]
    )
    assert len(np.unique(np.round(scaled, 6))) > 0.99 * scaled.size


def test_init_values_are_those_of_the_traced_flax_init():
    # Bit patterns that jnas's earlier init (flax's Net.init traced under jit,
    # drawing from make_rng("params")) gave; `nn.init` builds the variables
    # without tracing and must keep them, so searches keep their results.
    def first_bits(space, law, index, node, leaf):
        v = nn.init(
            nn.create_model(spaces.sample(space, law, index)), jax.random.key(42)
        )
        return [hex(b) for b in np.ravel(v["params"][node][leaf])[:3].view(np.uint32)]

    assert first_bits("resnext", "s3", 0, "stem.conv", "kernel") == [
        "0x3c91a99c",
        "0xbe88b186",
        "0x3f021714",
    ]
    assert first_bits("mobilenetv2", "s6", 3, "head.linear", "bias") == [
        "0x3e19d635",
        "0xbd820a55",
        "0x3d7dda40",
    ]


def test_bad_options_and_inputs_fail_early():
    net = nn_oracle.conv_bn_arch()
    with pytest.raises(ValueError, match="rounding='up' is not one of"):
        nn.create_model(net, rounding="up")
    with pytest.raises(ValueError, match="cannot parse FloatFormat"):
        nn.create_model(net, weight_format="fp8")
    model = nn.create_model(net)
    variables = nn.init(model, jax.random.key(0))
    with pytest.raises(ValueError, match=r"inputs of shape \(batch, 4, 4, 3\)"):
        nn.apply(model, variables, jnp.zeros((1, 3, 4, 4)))
    stochastic = nn.create_model(net, weight_format="e4m3", rounding="stochastic")
    with pytest.raises(ValueError, match="needs apply"):
        nn.apply(stochastic, variables, jnp.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize(
    "c_in,c_out,groups,kernel,stride,padding",
    [
        (8, 16, 1, 3, 1, 1),  # dense 3x3
        (8, 16, 1, 1, 2, 0),  # strided 1x1
        (8, 16, 4, 3, 2, 1),  # grouped
        (8, 16, 8, 3, 1, 1),  # depthwise, multiplier 2
        (8, 8, 8, 5, 2, 2),  # depthwise 5x5 strided
        (3, 6, 1, 7, 2, 3),  # a stem
    ],
)
def test_im2col_conv_matches_xla_conv_values_and_gradients(
    c_in, c_out, groups, kernel, stride, padding
):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(2, 9, 9, c_in)))
        w = jnp.asarray(rng.normal(size=(kernel, kernel, c_in // groups, c_out)))
        b = jnp.asarray(rng.normal(size=(c_out,)))

        def loss(impl, x, w, b):
            y = nn_ops.conv2d(
                x,
                w,
                b,
                stride=(stride, stride),
                padding=(padding, padding),
                groups=groups,
                impl=impl,
            )
            return jnp.sum(jnp.sin(y)), y

        (_, want), gwant = jax.value_and_grad(
            functools.partial(loss, "xla"), argnums=(0, 1, 2), has_aux=True
        )(x, w, b)
        (_, got), ggot = jax.value_and_grad(
            functools.partial(loss, "im2col"), argnums=(0, 1, 2), has_aux=True
        )(x, w, b)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        for g, gw in zip(ggot, gwant, strict=True):
            np.testing.assert_allclose(g, gw, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="conv impl 'fft'"):
        nn_ops.conv2d(x, w, None, stride=(1, 1), padding=(0, 0), groups=1, impl="fft")
