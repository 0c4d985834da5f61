"""The space registry: names, laws, bad input, and the unreleased spaces."""

import numpy as np
import pytest

from jnas import cost, spaces
from jnas.spaces import densenet

LAW_COUNTS = {
    "mobilenetv2": 6,
    "resnet": 5,
    "resnext": 3,
    "densenet": 3,
    "googlenet": 6,
    "pnasnet": 3,
    "probenet_s": 4,
}


def test_names_and_laws():
    assert spaces.names() == tuple(LAW_COUNTS)
    for space, count in LAW_COUNTS.items():
        assert len(spaces.laws(space)) == count
        assert spaces.laws(f"random_net_{space}") == spaces.laws(space)
    assert spaces.laws("probenet_s") == ("s0", "s1", "s2", "s3")


def test_every_module_has_the_common_surface():
    for space in spaces.names():
        mod = spaces.module(space)
        assert mod.NAME == space
        assert callable(mod.sample_args) and callable(mod.build)
        assert isinstance(mod.LAWS, dict) and isinstance(mod.REFERENCES, dict)


def test_release_spelling_gives_the_same_network():
    a = spaces.sample("random_net_mobilenetv2", "s1", 0)
    assert a == spaces.sample("mobilenetv2", "s1", 0)
    assert dict(a.meta)["space"] == "mobilenetv2"


def test_index_accepts_numpy_ints_and_the_full_seed_range():
    a = spaces.sampled_args("pnasnet", "s1", np.int64(5))
    assert a == spaces.sampled_args("pnasnet", "s1", 5)
    spaces.sampled_args("pnasnet", "s1", 2**32 - 1)


@pytest.mark.parametrize(
    "space, law, index, message",
    [
        ("mobilenet", "s1", 0, "unknown space 'mobilenet'; allowed: mobilenetv2, "),
        (["resnet"], "s1", 0, "unknown space"),
        ("resnet", "s6", 0, "unknown law 's6' for space 'resnet'; allowed: s1, s2"),
        ("probenet_s", 1, 0, "unknown law 1"),
        ("resnet", "s1", -1, r"index must be an int in \[0, 2\*\*32\); got -1"),
        ("resnet", "s1", 2**32, "got 4294967296"),
        ("resnet", "s1", True, "got True"),
        ("resnet", "s1", 1.0, "got 1.0"),
        ("resnet", "s1", "3", "got '3'"),
    ],
)
def test_bad_input_names_the_value(space, law, index, message):
    with pytest.raises(ValueError, match=message):
        spaces.sampled_args(space, law, index)
    with pytest.raises(ValueError, match=message):
        spaces.sample(space, law, index)


def test_bad_reference_and_build_arguments():
    with pytest.raises(ValueError, match="unknown reference model 'ResNet19'"):
        spaces.reference("ResNet19")
    assert spaces.reference("resnet18") == spaces.reference("ResNet18")
    with pytest.raises(ValueError, match="missing argument 'K'"):
        spaces.build("resnext", {"N": [1, 1, 1], "W": [4, 4, 4]})
    with pytest.raises(ValueError, match="'F' must be a list of 5 ints"):
        spaces.build("resnet", {"T": [0] * 4, "F": [8] * 4, "N": [1] * 4})
    with pytest.raises(ValueError, match="block type 2"):
        spaces.build("resnet", {"T": [0, 2, 0, 0], "F": [8] * 5, "N": [1] * 4})
    with pytest.raises(ValueError, match="integer multiples"):
        spaces.build("pnasnet", {"M": [1] * 3, "P": [8, 12, 24]})
    with pytest.raises(ValueError, match="must be odd"):
        spaces.build("probenet_s", {"F": [4] * 3, "Kr": [3, 3, 2, 3, 3, 3]})
    with pytest.raises(ValueError, match="'r' must be a float"):
        spaces.build("densenet", {"D": [1] * 4, "g": 4, "r": 0})


def test_densenet_zero_width_transition_is_invalid():
    assert spaces.sampled_args("densenet", "s2", 41)["r"] == 0.21
    with pytest.raises(ValueError, match=r"densenet s2 index 41: .*floors to 0"):
        spaces.sample("densenet", "s2", 41)


def test_densenet_transition_floors_the_float_product():
    assert densenet.transition_width(100, 29 / 100.0) == 28  # not 29
    net = spaces.build("densenet", {"D": [1, 1, 1, 1], "g": 48, "r": 0.29})
    # stem 96 + one layer of 48 = 144 channels; floor(144 * 0.29) = 41
    assert net.shapes["trans0.conv"] == (32, 32, 41)


def _bn_totals(net):
    bns = [n for n in net.nodes if n.op == "batchnorm"]
    return sum(net.shapes[n.inputs[0]][-1] for n in bns), len(bns)


def _check_consistent(net):
    costs = cost.node_costs(net)
    params = cost.params(net)
    assert params == sum(c.params for c in costs)
    assert params == sum(t.params for t in cost.breakdown(net).values())
    assert cost.flops(net) == sum(t.flops for t in cost.breakdown(net).values())
    channels, count = _bn_totals(net)
    assert cost.trainable_params(net) == params - 2 * channels - count
    assert net.shapes[net.nodes[-1].name] == (10,)


@pytest.mark.parametrize("law", spaces.laws("resnet"))
def test_resnet_samples_build_and_count_consistently(law):
    for index in range(20):
        args = spaces.sampled_args("resnet", law, index)
        net = spaces.sample("resnet", law, index)
        _check_consistent(net)
        expansion = 4 if args["T"][3] == 1 else 1
        assert net.shapes["head.pool"] == (1, 1, args["F"][4] * expansion)
        # nothing but conv, BN and linear is counted; no conv has a bias
        bn_elems = sum(
            np.prod(net.shapes[n.inputs[0]]) for n in net.nodes if n.op == "batchnorm"
        )
        assert cost.flops(net) == cost.macs(net) + 2 * bn_elems


@pytest.mark.parametrize("law", spaces.laws("probenet_s"))
def test_probenet_samples_match_closed_forms(law):
    for index in range(20):
        args = spaces.sampled_args("probenet_s", law, index)
        net = spaces.sample("probenet_s", law, index)
        _check_consistent(net)
        f, kr = args["F"], args["Kr"]
        c, side, params, flops = 3, 32, 0, 0
        for i in range(3):
            area = kr[2 * i] * kr[2 * i + 1]
            conv = f[i] * c * area
            params += conv + 4 * f[i] + 1
            # conv MACs + BN (2 per element) + counted 2x2 max pool (its input)
            flops += side * side * conv + 3 * side * side * f[i]
            c, side = f[i], side // 2
        params += 16 * f[2] * 10 + 10
        flops += 16 * f[2] * 10
        assert cost.params(net) == params
        assert cost.flops(net) == flops
        assert net.shapes["head.flatten"] == (16 * f[2],)
