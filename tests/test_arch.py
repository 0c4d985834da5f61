"""The architecture IR: validation, shapes, canonical JSON, hashes."""

import json
import re

import pytest

from jnas import arch, spaces

# Pinned: the hash names results and checkpoints; changing it is a format change.
PROBENET_S2_0_HASH = "ebf0b456f2d379f72b0acccbbee4208e780d166afd1c20fbd243cfaf02e8b57a"


def _net(*body, input_shape=(8, 8, 3), num_classes=10, meta=()):
    return arch.Arch(
        (arch.Node("input", "input"), *body), input_shape, num_classes, meta
    )


def _head(x, prefix="h"):
    return (
        arch.Node(f"{prefix}.pool", "avgpool", (x,), {"kernel": 8}),
        arch.Node(f"{prefix}.flat", "flatten", (f"{prefix}.pool",)),
        arch.Node(f"{prefix}.fc", "linear", (f"{prefix}.flat",), {"out_features": 10}),
    )


def test_node_normalises_attributes():
    node = arch.Node("c", "conv", ("input",), {"out_channels": 4, "kernel": 3})
    assert node.attr("kernel") == (3, 3)
    assert node.attr("stride") == (1, 1)
    assert node.attr("padding") == (0, 0)
    assert node.attr("groups") == 1 and node.attr("bias") is False
    assert [k for k, _ in node.attrs] == sorted(k for k, _ in node.attrs)
    pool = arch.Node("p", "maxpool", ("c",), {"kernel": (3, 2)})
    assert pool.attr("stride") == (3, 2)  # defaults to the kernel
    bn = arch.Node("b", "batchnorm", ("c",))
    assert (bn.attr("eps"), bn.attr("momentum")) == (1e-5, 0.1)
    assert arch.Node("r", "relu", ("c",)).attr("counted") is False


def test_shapes_are_inferred_hwc():
    net = _net(
        arch.Node(
            "c",
            "conv",
            ("input",),
            {"out_channels": 6, "kernel": (3, 1), "stride": (2, 1), "padding": (1, 0)},
        ),
        arch.Node("p", "maxpool", ("c",), {"kernel": 3, "stride": 1, "padding": 1}),
        arch.Node("cat", "concat", ("p", "c")),
        arch.Node("f", "flatten", ("cat",)),
        arch.Node("fc", "linear", ("f",), {"out_features": 10}),
    )
    assert net.shapes["c"] == (4, 8, 6)
    assert net.shapes["p"] == (4, 8, 6)
    assert net.shapes["cat"] == (4, 8, 12)
    assert net.shapes["f"] == (384,)
    assert net.shapes["fc"] == (10,)


def test_input_shape_is_configurable():
    net = spaces.sample("probenet_s", "s1", 0)
    big = arch.Arch(
        net.nodes[:-2]
        + (
            arch.Node("gap", "avgpool", (net.nodes[-3].name,), {"kernel": 8}),
            arch.Node("head.flatten", "flatten", ("gap",)),
            arch.Node("head.linear", "linear", ("head.flatten",), {"out_features": 10}),
        ),
        input_shape=(64, 64, 3),
    )
    assert big.shapes[net.nodes[-3].name] == (8, 8, 25)


@pytest.mark.parametrize(
    "body, message",
    [
        (
            (
                arch.Node(
                    "c",
                    "conv",
                    ("input",),
                    {"out_channels": 4, "kernel": 1, "groups": 2},
                ),
            ),
            "divisible by groups",
        ),
        (
            (
                arch.Node("c", "conv", ("input",), {"out_channels": 4, "kernel": 1}),
                arch.Node("a", "add", ("c", "input")),
            ),
            "different shapes",
        ),
        (
            (
                arch.Node("p", "maxpool", ("input",), {"kernel": 2}),
                arch.Node("a", "concat", ("p", "input")),
            ),
            "spatial size",
        ),
        (
            (arch.Node("c", "conv", ("input",), {"out_channels": 4, "kernel": 9}),),
            "larger than the padded input",
        ),
        (
            (arch.Node("p", "maxpool", ("input",), {"kernel": 2, "padding": 2}),),
            "exceeds half the kernel",
        ),
        ((arch.Node("l", "linear", ("input",), {"out_features": 10}),), "flat"),
        ((arch.Node("r", "relu", ("later",)),), "not an earlier node"),
        (
            (arch.Node("r", "relu", ("input",)), arch.Node("r", "relu", ("r",))),
            "duplicate",
        ),
        (
            (arch.Node("r", "relu", ("input",)), arch.Node("s", "relu", ("input",))),
            "never consumed",
        ),
        ((arch.Node("r", "relu", ("input",)),), "expected (10,)"),
        ((arch.Node("x", "input"),), "only the first node"),
        (
            (
                arch.Node(
                    "c",
                    "conv",
                    ("input",),
                    {"out_channels": 4, "kernel": 1, "groups": "depthwise"},
                ),
            ),
            "divisible by groups 3",
        ),
    ],
)
def test_inconsistent_graphs_raise(body, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _net(*body)


@pytest.mark.parametrize(
    "op, attrs, inputs, message",
    [
        ("conv2d", {}, ("input",), "unknown op 'conv2d'; allowed: input, conv"),
        (["conv"], {}, ("input",), r"unknown op \['conv'\]"),
        ("conv", {"out_channels": 4}, ("input",), "'kernel' is required"),
        (
            "conv",
            {"out_channels": 4, "kernel": 1, "dilation": 2},
            ("input",),
            "unknown attribute 'dilation'; allowed: out_channels",
        ),
        (
            "conv",
            {"out_channels": 4, "kernel": 1, "groups": "dw"},
            ("input",),
            "positive int or 'depthwise'",
        ),
        ("conv", {"out_channels": True, "kernel": 1}, ("input",), "must be an int"),
        (
            "conv",
            {"out_channels": 0, "kernel": 1},
            ("input",),
            "'out_channels' must be >= 1; got 0",
        ),
        ("conv", {"out_channels": 4, "kernel": (1, 2, 3)}, ("input",), "a pair"),
        ("relu", {"counted": 1}, ("input",), "true or false"),
        ("flatten", {"order": "hwc"}, ("input",), "must be 'chw'"),
        ("batchnorm", {"eps": 0.0}, ("input",), "'eps' must lie in"),
        ("add", {}, ("input",), "at least 2"),
        ("relu", {}, ("input", "input"), "takes 1 input"),
    ],
)
def test_bad_nodes_raise(op, attrs, inputs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        arch.Node("n", op, inputs, attrs)


def test_bad_arch_fields_raise():
    body = _head("input")
    with pytest.raises(ValueError, match="input_shape"):
        _net(*body, input_shape=(8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        _net(*body, num_classes=True)
    with pytest.raises(ValueError, match="meta field 'x'"):
        _net(*body, meta={"x": [1]})
    with pytest.raises(ValueError, match="first node must be the input"):
        arch.Arch(body)


ROUTES = [
    ("mobilenetv2", "s1", 0),
    ("densenet", "s3", 0),
    ("googlenet", "s3", 0),
    ("pnasnet", "s2", 0),
    ("resnext", "s1", 1),
    ("resnet", "s4", 0),
    ("probenet_s", "s0", 0),
]


@pytest.mark.parametrize("key", ROUTES, ids=str)
def test_json_round_trips_exactly(key):
    net = spaces.sample(*key)
    text = net.to_json()
    back = arch.Arch.from_json(text)
    assert back == net
    assert back.to_json() == text
    assert back.hash == net.hash and back.skeleton_hash == net.skeleton_hash
    data = json.loads(text)
    assert list(data) == sorted(data)  # canonical: sorted keys
    assert data["meta"] == {"space": key[0], "law": key[1], "index": key[2]}


def test_json_keeps_float_attributes_exact():
    net = _net(
        arch.Node("b", "batchnorm", ("input",), {"eps": 1.1e-5, "momentum": 0.3}),
        *_head("b"),
    )
    back = arch.Arch.from_json(net.to_json())
    assert back.node("b").attr("eps") == 1.1e-5
    assert back.node("b").attr("momentum") == 0.3


def _mutate(fn):
    data = json.loads(spaces.sample("probenet_s", "s2", 0).to_json())
    fn(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "does not parse"),
        ("[]", "must be an object"),
        (_mutate(lambda d: d.pop("nodes")), "missing field 'nodes'"),
        (_mutate(lambda d: d.update(extra=1)), "unknown field 'extra'"),
        (_mutate(lambda d: d.update(version=2)), "field 'version'"),
        (_mutate(lambda d: d.update(input_shape="32")), "field 'input_shape'"),
        (_mutate(lambda d: d.update(meta=[])), "field 'meta'"),
        (_mutate(lambda d: d.update(nodes=[])), "field 'nodes'"),
        (_mutate(lambda d: d["nodes"][1].pop("op")), r"nodes\[1\]: missing field 'op'"),
        (_mutate(lambda d: d["nodes"][1].update(x=1)), r"nodes\[1\]: unknown field"),
        (_mutate(lambda d: d["nodes"][1].update(inputs="input")), "'inputs' must be"),
        (_mutate(lambda d: d["nodes"][1].update(attrs=[])), "'attrs' must be"),
        (
            _mutate(lambda d: d["nodes"][1]["attrs"].update(kernel=[3, 3, 3])),
            r"nodes\[1\]: node 'layer0.conv' \(conv\): attribute 'kernel'",
        ),
        (
            _mutate(lambda d: d["nodes"][1]["attrs"].update(out_channels=-1)),
            "attribute 'out_channels' must be >= 1",
        ),
        (
            _mutate(lambda d: d["nodes"][2].update(inputs=["nowhere"])),
            "input 'nowhere' is not an earlier node",
        ),
        (_mutate(lambda d: d.update(num_classes=11)), "expected \\(11,\\)"),
    ],
)
def test_malformed_json_names_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        arch.Arch.from_json(text)


def test_hash_ignores_meta_and_route():
    ref = spaces.reference("ResNet18")
    args = spaces.reference_args("ResNet18")[1]
    built = spaces.build("random_net_resnet", args)
    assert dict(ref.meta) != dict(built.meta)
    assert ref.hash == built.hash
    assert built.with_meta({"space": "x", "law": "s9", "index": 7}).hash == ref.hash
    assert len(ref.hash) == 64 and ref.hash != ref.skeleton_hash


def test_hash_is_stable_across_processes():
    net = spaces.sample("probenet_s", "s2", 0)
    assert net.hash == arch.Arch.from_json(net.to_json()).hash
    assert net.hash == PROBENET_S2_0_HASH


def _mobilenet(scale, e=None):
    args = dict(spaces.reference_args("MobileNetV2")[1])
    args["O"] = [o * scale for o in args["O"]]
    args["C_stem"] *= scale
    args["C_head"] += 8 * scale
    if e is not None:
        args["E"] = e
    return spaces.build("mobilenetv2", args)


def test_width_change_keeps_the_skeleton():
    a, b = _mobilenet(1), _mobilenet(2, e=[2, 3, 4, 5, 6, 2, 3])
    assert a.hash != b.hash
    assert a.skeleton_hash == b.skeleton_hash
    # ResNeXt: the bottleneck width W is a width, the cardinality K is not.
    base = {"N": [1, 2, 1], "W": [4, 8, 16], "K": [2, 4, 8]}
    wider = spaces.build("resnext", {**base, "W": [5, 9, 17]})
    regrouped = spaces.build("resnext", {**base, "K": [2, 4, 4]})
    ref = spaces.build("resnext", base)
    assert wider.skeleton_hash == ref.skeleton_hash
    assert regrouped.skeleton_hash != ref.skeleton_hash


def test_structure_change_changes_the_skeleton():
    args = dict(spaces.reference_args("MobileNetV2")[1])
    base = spaces.build("mobilenetv2", args)
    deeper = spaces.build("mobilenetv2", {**args, "N": [1, 2, 3, 4, 3, 3, 2]})
    strided = spaces.build("mobilenetv2", {**args, "S": [2, 1, 2, 2, 1, 1, 1]})
    assert len({base.skeleton_hash, deeper.skeleton_hash, strided.skeleton_hash}) == 3


def test_depthwise_multiplier_is_structural():
    m = [1, 1, 1]
    a = spaces.build("pnasnet", {"M": m, "P": [8, 16, 32]})
    b = spaces.build("pnasnet", {"M": m, "P": [10, 20, 40]})
    c = spaces.build("pnasnet", {"M": m, "P": [8, 8, 16]})
    assert a.skeleton_hash == b.skeleton_hash != c.skeleton_hash


def test_depthwise_is_a_rule_in_the_ir():
    net = spaces.reference("MobileNetV2")
    node = net.node("stage1.block0.conv2")
    assert node.attr("groups") == arch.DEPTHWISE
    assert net.groups(node) == net.shapes[node.inputs[0]][-1] == 6 * 16
    assert arch.WIDTH_ATTRS == {"conv": ("out_channels",), "linear": ("out_features",)}


def test_names_are_readable_and_stable():
    names = [n.name for n in spaces.reference("ResNet18").nodes]
    assert names[:4] == ["input", "stem.conv", "stem.bn", "stem.relu"]
    assert "stage2.block0.conv1" in names and "stage2.block0.shortcut.conv" in names
    assert names[-3:] == ["head.pool", "head.flatten", "head.linear"]
