"""The cost model: counts from the IR alone."""

import math

import numpy as np
import pytest

from jnas import arch, cost, precision, spaces


def _skip_net():
    """input 4x4x2 -> conv -> relu -> conv -> add(conv1) -> pool -> linear."""
    n = arch.Node
    return arch.Arch(
        (
            n("input", "input"),
            n("c1", "conv", ("input",), {"out_channels": 4, "kernel": 1}),
            n("r", "relu", ("c1",)),
            n("c2", "conv", ("r",), {"out_channels": 4, "kernel": 3, "padding": 1}),
            n("s", "add", ("c2", "c1")),
            n("p", "avgpool", ("s",), {"kernel": 4}),
            n("f", "flatten", ("p",)),
            n("fc", "linear", ("f",), {"out_features": 10}),
        ),
        input_shape=(4, 4, 2),
    )


def test_node_costs_of_a_small_graph():
    costs = {c.name: c for c in cost.node_costs(_skip_net())}
    assert costs["c1"].kind == "conv_1x1" and costs["c2"].kind == "conv_dense"
    assert (costs["c1"].macs, costs["c1"].params) == (16 * 4 * 2, 8)
    assert (costs["c2"].macs, costs["c2"].flops) == (16 * 4 * 36, 16 * 4 * 36)
    assert (costs["s"].in_elems, costs["s"].out_elems) == (128, 64)
    assert (costs["fc"].params, costs["fc"].flops) == (50, 40)
    assert costs["p"].flops == 0 and costs["r"].flops == 0  # not counted


@pytest.mark.parametrize(
    "fmt, expected",
    [
        # peak: conv1, relu, conv2 live (or conv1, conv2, add): 3 x 64 values
        (precision.FloatFormat(8, 23), 3 * 64 * 4),
        ("e5m10", 3 * 64 * 2),
        (precision.FloatFormat(3, 3), 3 * 56),  # 7 bits: ceil(64 * 7 / 8) each
        (precision.FloatFormat(1, 1), 3 * 24),
    ],
)
def test_peak_activation_bytes_of_a_small_graph(fmt, expected):
    assert cost.peak_activation_bytes(_skip_net(), fmt) == expected


def test_peak_activation_includes_the_input_and_each_tensor_rounds_up():
    n = arch.Node
    net = arch.Arch(
        (
            n("input", "input"),
            n("p", "maxpool", ("input",), {"kernel": 2}),
            n("f", "flatten", ("p",)),
            n("fc", "linear", ("f",), {"out_features": 10}),
        ),
        input_shape=(2, 2, 3),
    )
    # input 12 values + pooled 3 values live together; 5 bits: 8 + 2 bytes
    assert cost.peak_activation_bytes(net, precision.FloatFormat(2, 2)) == 10


def test_peak_activation_grows_with_bits_and_network_size():
    small = spaces.sample("mobilenetv2", "s6", 0)
    big = spaces.reference("MobileNetV2")
    half, single = precision.HALF, precision.FLOAT32
    assert cost.peak_activation_bytes(small, half) < cost.peak_activation_bytes(
        small, single
    )
    assert cost.peak_activation_bytes(small, single) < cost.peak_activation_bytes(
        big, single
    )
    # the stem output stays live for block 0's projection shortcut while its
    # expansion conv and BN run: at least three 32x32x32 maps at once
    assert cost.peak_activation_bytes(big, single) >= 3 * 32 * 32 * 32 * 4


def _bn_channels(net, which=lambda node: True):
    return sum(
        net.shapes[n.inputs[0]][-1]
        for n in net.nodes
        if n.op == "batchnorm" and which(n)
    )


def test_folded_weights_mobilenetv2_every_bn_folds():
    net = spaces.sample("mobilenetv2", "s6", 0)
    parts = cost.breakdown(net)
    expected = parts["conv"].params + _bn_channels(net) + parts["linear"].params
    assert cost.weights(net) == expected
    assert parts["batchnorm"].weights == 0


def test_folded_weights_densenet_preactivation_bns_stay():
    net = spaces.sample("densenet", "s3", 0)
    parts = cost.breakdown(net)
    folded = _bn_channels(net, lambda n: n.name.endswith(".bn2"))
    kept = _bn_channels(net, lambda n: not n.name.endswith(".bn2"))
    assert kept > 0 and folded > 0
    assert parts["batchnorm"].weights == 2 * kept
    assert cost.weights(net) == (
        parts["conv"].params + folded + 2 * kept + parts["linear"].params
    )


def test_folded_weights_googlenet_bias_is_not_doubled():
    net = spaces.sample("googlenet", "s3", 0)
    parts = cost.breakdown(net)
    # every conv has a bias and a BN after it: the folded bias replaces it
    assert cost.weights(net) == parts["conv"].params + parts["linear"].params


def test_trainable_and_macs():
    net = spaces.sample("mobilenetv2", "s6", 0)
    n_bn = sum(n.op == "batchnorm" for n in net.nodes)
    assert cost.trainable_params(net) == cost.params(net) - 2 * _bn_channels(net) - n_bn
    bn_elems = sum(
        math.prod(net.shapes[n.inputs[0]]) for n in net.nodes if n.op == "batchnorm"
    )
    assert cost.macs(net) == cost.flops(net) - 2 * bn_elems


@pytest.mark.parametrize(
    "key, name, kind",
    [
        (("mobilenetv2", "s1", 0), "stem.conv", "conv_dense"),
        (("mobilenetv2", "s1", 0), "stage0.block0.conv1", "conv_1x1"),
        (("mobilenetv2", "s1", 0), "stage0.block0.conv2", "conv_depthwise"),
        (("pnasnet", "s1", 0), "down1.sep.conv", "conv_depthwise"),
        (("resnext", "s1", 0), "stage0.block0.conv2", "conv_grouped"),
        (("resnext", "s3", 0), "stage0.block0.conv2", "conv_dense"),  # K = 1
        (("googlenet", "s3", 0), "pool1", "maxpool"),
        (("densenet", "s3", 0), "block0.layer0.concat", "concat"),
        (("resnet", "s1", 0), "head.linear", "linear"),
    ],
)
def test_node_kinds(key, name, kind):
    costs = {c.name: c for c in cost.node_costs(spaces.sample(*key))}
    assert costs[name].kind == kind


def test_googlenet_counts_both_calls_of_the_shared_pool():
    net = spaces.reference("GoogLeNet")
    costs = {c.name: c for c in cost.node_costs(net)}
    assert costs["pool1"].flops == 32 * 32 * 480
    assert costs["pool2"].flops == 16 * 16 * 832


@pytest.mark.parametrize("convention", cost.CONVENTIONS)
def test_memory_bytes(convention):
    net = spaces.sample("pnasnet", "s3", 0)
    count = cost.params(net) if convention == "release" else cost.weights(net)
    assert cost.memory_bytes(net, precision.FLOAT32, convention) == 4 * count
    assert cost.memory_bytes(net, "e5m10", convention) == 2 * count
    e2m2 = precision.FloatFormat(2, 2)
    assert cost.memory_bytes(net, e2m2, convention) == -(-count * 5 // 8)


def test_memory_bytes_release_is_the_paper_measure():
    net = spaces.sample("mobilenetv2", "s6", 0)
    assert cost.memory_bytes(net, precision.FLOAT32) == 4 * 1528


def test_bad_convention_names_the_allowed_values():
    net = spaces.sample("pnasnet", "s3", 0)
    with pytest.raises(ValueError, match="unknown convention 'int8'; allowed: release"):
        cost.memory_bytes(net, precision.FLOAT32, "int8")


def test_breakdown_has_every_category():
    totals = cost.breakdown(spaces.sample("resnet", "s5", 0))
    assert tuple(totals) == cost.CATEGORIES
    assert totals["relu"] == cost.Totals()
    assert isinstance(totals["conv"].params, int)
    assert not isinstance(totals["conv"].flops, np.integer)
