"""benchmarks/torch_ir.py: the IR as a PyTorch module, the baseline of
benchmarks/vs_pytorch.py. Same state-dict size as `cost.params`, same eval
forward and same SGD steps as jnas given the same weights.

PyTorch is the benchmark-only `bench` extra, so without it this module skips.
Compiles dominate (~1-3 s per network on CPU); the programs use LLVM -O0 as in
tests/test_nn.py.
"""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="PyTorch is not installed: it is the benchmark-only extra "
    "(pip install -e '.[bench]') that benchmarks/vs_pytorch.py compares against",
)

from jnas import cost, nn, spaces  # noqa: E402
from jnas.population import step as train  # noqa: E402

try:  # tests/ is put on sys.path by pytest's default (prepend) import mode
    import nn_oracle
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests import nn_oracle

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_ir.py"
_SPEC = importlib.util.spec_from_file_location("torch_ir", _PATH)
torch_ir = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(torch_ir)

FAST_COMPILE = {"xla_backend_optimization_level": 0}
# (space, law, index), with nn_oracle.tiny_arch (every op and the awkward
# attributes): depthwise and grouped convs, padded max pools, adds, concats,
# flatten of a map. GoogLeNet (~11 s to compile) only for counts.
FORWARD_CASES = [
    ("mobilenetv2", "s6", 0),
    ("resnext", "s3", 0),
    ("pnasnet", "s3", 0),
    ("densenet", "s3", 0),
    ("probenet_s", "s2", 0),
]
# Counting compiles nothing: also GoogLeNet, MobileNetV2 s5 (the benchmark's
# law) and the first (largest) law of every space.
COUNT_CASES = [
    *FORWARD_CASES,
    ("googlenet", "s6", 0),
    ("mobilenetv2", "s5", 1),
    *((space, spaces.laws(space)[0], 0) for space in spaces.names()),
]


@pytest.fixture(autouse=True)
def _exact_matmuls():
    # GPUs default to TF32 convolutions; the comparisons here are at ~1e-5.
    with jax.default_matmul_precision("highest"):
        yield


def _arch(case):
    return nn_oracle.tiny_arch() if case == "tiny" else spaces.sample(*case)


def _variables(net, seed=0):
    """jnas.nn's initial variables with non-trivial BN statistics and affine."""
    variables = jax.tree.map(np.array, nn.init(nn.create_model(net), jax.random.key(0)))
    rng = np.random.default_rng(seed)
    for name, s in variables["batch_stats"].items():
        s["mean"] = rng.normal(0.0, 0.1, s["mean"].shape).astype(np.float32)
        s["var"] = rng.uniform(0.5, 2.0, s["var"].shape).astype(np.float32)
        p = variables["params"][name]
        p["scale"] = rng.uniform(0.5, 1.5, p["scale"].shape).astype(np.float32)
        p["bias"] = rng.normal(0.0, 0.1, p["bias"].shape).astype(np.float32)
    return variables


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("case", ["tiny", *COUNT_CASES], ids=str)
def test_state_dict_matches_cost_params(case):
    net = _arch(case)
    module = torch_ir.build(net)
    assert torch_ir.state_dict_numel(module) == cost.params(net)
    trainable = sum(p.numel() for p in module.parameters())
    assert trainable == cost.trainable_params(net)


@pytest.mark.parametrize("case", ["tiny", *FORWARD_CASES], ids=str)
def test_eval_forward_matches_jnas(case):
    net = _arch(case)
    variables = _variables(net)
    model = nn.create_model(net)
    x = np.random.default_rng(1).normal(size=(3, *net.input_shape))
    x = x.astype(np.float32)
    fwd = jax.jit(lambda v, x: nn.apply(model, v, x))
    want = np.asarray(fwd.lower(variables, x).compile(FAST_COMPILE)(variables, x))

    module = torch_ir.build(net)
    torch_ir.load_jnas_variables(module, variables, net)
    module.eval()
    with torch.no_grad():
        got = module(_nchw(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        module = module.to(memory_format=torch.channels_last)
        x_cl = _nchw(x).contiguous(memory_format=torch.channels_last)
        np.testing.assert_allclose(module(x_cl).numpy(), want, rtol=1e-5, atol=1e-5)
    # The round trip of the weight interchange is exact.
    back = torch_ir.jnas_variables(module, net)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sgd_steps_match_jnas():
    """Two steps of the benchmark's recipe (train-mode BN, PyTorch SGD with
    momentum 0.9, weight decay 5e-4, lr 0.05) give the same weights and
    running statistics on both sides. The tiny arch has every op."""
    net = nn_oracle.tiny_arch()
    variables = _variables(net)
    rng = np.random.default_rng(2)
    batches = [
        (
            rng.normal(size=(8, *net.input_shape)).astype(np.float32),
            rng.integers(0, net.num_classes, 8).astype(np.int32),
        )
        for _ in range(2)
    ]
    tx = train.make_optimizer(momentum=0.9, weight_decay=5e-4)
    step = jax.jit(
        lambda s, x, y: train.train_step(
            s,
            x,
            y,
            model=nn.create_model(net),
            tx=tx,
            schedule=train.make_schedule("constant", 2),
        )
    )
    state = train.create_state(variables, tx=tx, lr=0.05, key=jax.random.key(0))
    step = step.lower(state, *batches[0]).compile(FAST_COMPILE)
    losses = []
    for x, y in batches:
        state, metrics = step(state, x, y)
        losses.append(float(metrics["loss"]))

    module = torch_ir.build(net)
    torch_ir.load_jnas_variables(module, variables, net)
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for (x, y), want_loss in zip(batches, losses, strict=True):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            module(_nchw(x)), torch.from_numpy(y).long()
        )
        loss.backward()
        opt.step()
        assert loss.item() == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
    got = torch_ir.jnas_variables(module, net)
    want = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    assert jax.tree.structure(got) == jax.tree.structure(want)
    flat_got = jax.tree_util.tree_leaves_with_path(got)
    flat_want = jax.tree.leaves(want)
    for (path, a), b in zip(flat_got, flat_want, strict=True):
        np.testing.assert_allclose(
            a, b, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path)
        )
