"""Test vectors of search-spaces.md section 12 (hand-copied from the spec)."""

import numpy as np
import pytest

from jnas import cost, spaces

ALL1 = [1] * 7
# (space, law, index, sampled arguments, params, flops); None: not given.
SAMPLED = [
    (
        "mobilenetv2",
        "s1",
        0,
        {
            "E": [5, 6, 1, 4, 4, 4, 2],
            "O": [227, 37, 52, 103, 86, 232, 104],
            "N": [1, 3, 2, 3, 3, 1, 2],
            "S": [2, 1, 1, 1, 2, 2, 1],
            "C_stem": 96,
            "C_head": 883,
        },
        1510822,
        279221214,
    ),
    (
        "mobilenetv2",
        "s1",
        1,
        {
            "E": [6, 4, 5, 1, 2, 4, 6],
            "O": [95, 208, 160, 145, 220, 87, 253],
            "N": [1, 3, 2, 3, 1, 3, 2],
            "S": [2, 1, 1, 2, 1, 1, 2],
            "C_stem": 45,
            "C_head": 526,
        },
        3462678,
        489678476,
    ),
    (
        "mobilenetv2",
        "s2",
        0,
        {
            "E": [5, 1, 4, 4, 4, 2, 4],
            "O": [37, 52, 103, 86, 104, 104, 28],
            "N": [1, 2, 1, 2, 2, 1, 1],
            "S": [2, 1, 2, 1, 1, 1, 2],
            "C_stem": 36,
            "C_head": 243,
        },
        520755,
        44927902,
    ),
    (
        "mobilenetv2",
        "s3",
        0,
        {
            "E": [1, 2, 1, 2, 2, 3, 1],
            "O": [39, 22, 40, 40, 28, 17, 54],
            "N": ALL1,
            "S": [1, 2, 1, 1, 2, 2, 1],
            "C_stem": 24,
            "C_head": 137,
        },
        45328,
        11685402,
    ),
    (
        "mobilenetv2",
        "s4",
        0,
        {
            "E": [1, 2, 1, 2, 2, 3, 1],
            "O": [27, 10, 28, 28, 16, 30, 5],
            "N": ALL1,
            "S": [1, 2, 1, 1, 2, 2, 1],
            "C_stem": 24,
            "C_head": 73,
        },
        21247,
        6844458,
    ),
    (
        "mobilenetv2",
        "s5",
        0,
        {
            "E": [1, 2, 1, 2, 2, 3, 1],
            "O": [2, 2, 6, 4, 3, 2, 3],
            "N": ALL1,
            "S": [2, 1, 1, 1, 2, 2, 1],
            "C_stem": 16,
            "C_head": 21,
        },
        2523,
        971026,
    ),
    (
        "mobilenetv2",
        "s6",
        0,
        {
            "E": ALL1,
            "O": [6, 7, 2, 5, 5, 5, 3],
            "N": ALL1,
            "S": [2, 1, 1, 2, 2, 1, 1],
            "C_stem": 4,
            "C_head": 12,
        },
        1528,
        280360,
    ),
    (
        "resnet",
        "s1",
        0,
        {"T": [0, 1, 1, 0], "F": [851, 779, 723, 375, 25], "N": [2, 3, 1, 3]},
        None,
        None,
    ),
    (
        "resnet",
        "s1",
        1,
        {"T": [1, 1, 0, 0], "F": [783, 921, 731, 661, 863], "N": [1, 1, 2, 1]},
        None,
        None,
    ),
    (
        "resnet",
        "s2",
        0,
        {"T": [0, 1, 1, 0], "F": [339, 267, 211, 375, 25], "N": [2, 2, 1, 1]},
        None,
        None,
    ),
    (
        "resnet",
        "s3",
        0,
        {"T": [0, 1, 1, 0], "F": [83, 83, 119, 25, 99], "N": [2, 1, 1, 2]},
        None,
        None,
    ),
    (
        "resnet",
        "s4",
        0,
        {"T": [0, 1, 1, 0], "F": [7, 31, 7, 11, 13], "N": [2, 2, 1, 1]},
        None,
        None,
    ),
    (
        "resnet",
        "s5",
        0,
        {"T": [0, 1, 1, 0], "F": [5, 5, 5, 3, 5], "N": [2, 1, 1, 2]},
        None,
        None,
    ),
    (
        "resnext",
        "s1",
        0,
        {"N": [1, 2, 2], "W": [4, 7, 63], "K": [68, 10, 4]},
        1160001,
        344081328,
    ),
    (
        "resnext",
        "s1",
        1,
        {"N": [2, 2, 1], "W": [12, 13, 15], "K": [6, 16, 1]},
        492124,
        192610156,
    ),
    (
        "resnext",
        "s2",
        0,
        {"N": [1, 2, 2], "W": [4, 7, 31], "K": [4, 8, 2]},
        120721,
        20993752,
    ),
    (
        "resnext",
        "s3",
        0,
        {"N": [1, 1, 1], "W": [4, 7, 5], "K": [1, 2, 4]},
        7717,
        2253456,
    ),
    ("densenet", "s1", 0, {"D": [13, 16, 22, 1], "g": 4, "r": 0.79}, 166093, 35438476),
    ("densenet", "s1", 1, {"D": [6, 12, 13, 9], "g": 10, "r": 0.31}, 322014, 68505366),
    ("densenet", "s2", 0, {"D": [13, 6, 1, 4], "g": 12, "r": 0.23}, 236095, 157983280),
    ("densenet", "s3", 0, {"D": [5, 6, 1, 4], "g": 4, "r": 0.53}, 19014, 7223192),
    ("pnasnet", "s1", 0, {"M": [6, 1, 4], "P": [83, 166, 332]}, 208771, 45410296),
    ("pnasnet", "s1", 1, {"M": [6, 9, 10], "P": [91, 182, 182]}, 287327, 67991196),
    ("pnasnet", "s2", 0, {"M": [5, 6, 1], "P": [19, 38, 76]}, 32631, 9894136),
    ("pnasnet", "s3", 0, {"M": [1, 2, 2], "P": [8, 8, 8]}, 3508, 1072720),
    ("probenet_s", "s0", 0, {"F": [45, 48, 118], "Kr": [1, 7, 7, 7, 7, 3]}, None, None),
    ("probenet_s", "s1", 0, {"F": [16, 19, 25], "Kr": [1, 7, 7, 7, 7, 3]}, None, None),
    ("probenet_s", "s1", 1, {"F": [9, 15, 16], "Kr": [1, 7, 3, 7, 3, 7]}, None, None),
    ("probenet_s", "s2", 0, {"F": [6, 7, 2], "Kr": [3, 3, 5, 1, 5, 1]}, None, None),
    ("probenet_s", "s3", 0, {"F": [60, 63, 80], "Kr": [7, 7, 7, 7, 3, 7]}, None, None),
]


def _modules(text):
    return [[int(v) for v in m.split(",")] for m in text.split(" / ")]


GOOGLENET = [
    (
        "s1",
        0,
        188,
        "25,37,258,20,103,86 / 103,190,104,33,53,41 / "
        "213,95,354,19,104,65 / 281,143,48,47,90,39 / 144,180,69,21,54,120 / "
        "47,136,273,17,119,57 / 107,144,115,37,28,58 / 147,116,196,24,94,31 / "
        "357,64,321,21,57,51",
        3889274,
        1314826164,
    ),
    (
        "s1",
        1,
        53,
        "351,160,145,28,87,125 / 268,172,66,20,103,103 / "
        "23,79,333,38,73,17 / 137,46,87,19,86,37 / 42,68,352,29,57,98 / "
        "298,169,120,38,25,83 / 329,99,182,24,48,50 / 259,108,90,46,62,48 / "
        "269,22,68,37,86,18",
        3620211,
        1527118778,
    ),
    (
        "s2",
        0,
        188,
        "25,35,37,18,20,23 / 55,39,62,24,17,21 / 21,31,63,16,18,19 / "
        "55,48,17,25,25,31 / 44,50,16,16,20,21 / 57,58,47,24,17,17 / "
        "62,34,43,16,30,19 / 22,20,63,31,20,19 / 51,39,31,29,21,21",
        364347,
        146155288,
    ),
    (
        "s3",
        0,
        188,
        "19,13,18,4,7,6 / 23,14,24,5,5,5 / 30,15,31,4,6,7 / "
        "16,9,25,5,7,4 / 28,10,16,4,4,5 / 26,10,31,4,5,5 / 30,10,27,4,6,7 / "
        "22,12,31,7,4,7 / 19,10,23,7,5,5",
        68495,
        32702472,
    ),
    (
        "s4",
        0,
        60,
        "7,5,6,4,7,6 / 7,6,4,5,5,5 / 6,7,7,4,6,7 / 4,5,5,5,7,4 / "
        "4,6,4,4,4,5 / 6,6,7,4,5,5 / 6,6,7,4,6,7 / 6,4,7,7,4,7 / 7,6,7,7,5,5",
        None,
        None,
    ),
    (
        "s5",
        0,
        12,
        "5,5,4,4,5,4 / 5,4,4,5,5,5 / 4,5,5,4,4,5 / 4,5,5,5,5,4 / "
        "4,4,4,4,4,5 / 4,4,5,4,5,5 / 4,4,5,4,4,5 / 4,4,5,5,4,5 / 5,4,5,5,5,5",
        None,
        None,
    ),
    (
        "s6",
        0,
        12,
        "5,3,4,2,5,4 / 5,4,2,3,3,3 / 4,5,5,2,4,5 / 2,3,3,3,5,2 / "
        "2,4,2,2,2,3 / 4,4,5,2,3,3 / 4,4,5,2,4,5 / 4,2,5,5,2,5 / 5,4,5,5,3,3",
        None,
        None,
    ),
]
SAMPLED += [
    ("googlenet", law, i, {"C_stem": c, "modules": _modules(m)}, p, f)
    for law, i, c, m, p, f in GOOGLENET
]

# 12.2: network -> {category: (params, flops)}
BREAKDOWN = {
    ("mobilenetv2", "s6", 0): {
        "conv": (856, 231952),
        "batchnorm": (542, 48288),
        "relu": (0, 0),
        "pool": (0, 0),
        "linear": (130, 120),
    },
    ("resnext", "s3", 0): {
        "conv": (6126, 1985280),
        "batchnorm": (1181, 267776),
        "relu": (0, 0),
        "pool": (0, 0),
        "linear": (410, 400),
    },
    ("densenet", "s3", 0): {
        "conv": (15928, 6682624),
        "batchnorm": (2796, 540288),
        "relu": (0, 0),
        "pool": (0, 0),
        "linear": (290, 280),
    },
    ("googlenet", "s3", 0): {
        "conv": (64209, 30886080),
        "batchnorm": (3756, 937600),
        "relu": (0, 468800),
        "pool": (0, 409472),
        "linear": (530, 520),
    },
    ("pnasnet", "s3", 0): {
        "conv": (3088, 1019392),
        "batchnorm": (330, 53248),
        "relu": (0, 0),
        "pool": (0, 0),
        "linear": (90, 80),
    },
}

# 12.3: reference model -> (params, flops)
REFERENCES = {
    "MobileNetV2": (2332067, 94604800),
    "ResNet18": (11183582, 556651520),
    "ResNet34": (21299182, 1161450496),
    "ResNet50": (23574015, 1304694784),
    "ResNet101": (42618418, 2520190976),
    "ResNet152": (58308197, 3736473600),
    "ResNeXt29_2x64d": (9154025, 1416636416),
    "ResNeXt29_4x64d": (27154921, 4242231296),
    "ResNeXt29_8x64d": (89698793, 14121279488),
    "ResNeXt29_32x4d": (4799465, 779626496),
    "DenseNet121": (7039938, 898058240),
    "DenseNet169": (12651762, 1071698176),
    "DenseNet201": (18333458, 1379498752),
    "DenseNet161": (26702282, 2485973568),
    "densenet_cifar": (1032058, 128981760),
    "GoogLeNet": (6182122, 1533962240),
    "PNASNetA": (135509, 29209312),
    "ProbeNet_s": (11333, 859136),
}


def _id(row):
    return f"{row[0]}-{row[1]}-{row[2]}"


@pytest.mark.parametrize("row", SAMPLED, ids=[_id(r) for r in SAMPLED])
def test_sampled_arguments_and_counts(row):
    space, law, index, expected, params, flops = row
    args = spaces.sampled_args(space, law, index)
    got = {k: v for k, v in args.items() if k != "P" or space != "resnext"}
    assert got == expected
    net = spaces.sample(space, law, index)
    if params is not None:
        assert cost.params(net) == params
        assert cost.flops(net) == flops


def test_resnext_product_limit_is_reported():
    assert spaces.sampled_args("resnext", "s2", 0)["P"] == 128


@pytest.mark.parametrize("key", sorted(BREAKDOWN), ids=_id)
def test_per_category_breakdown(key):
    totals = cost.breakdown(spaces.sample(*key))
    got = {cat: (t.params, t.flops) for cat, t in totals.items() if cat != "other"}
    assert got == BREAKDOWN[key]
    assert totals["other"].params == totals["other"].flops == 0


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_models(name):
    net = spaces.reference(name)
    assert (cost.params(net), cost.flops(net)) == REFERENCES[name]


def test_every_reference_is_covered():
    assert set(spaces.references()) == set(REFERENCES)


def test_low_level_random_state():
    rng = np.random.RandomState(0)
    assert rng.randint(1, 8, 7).tolist() == [5, 6, 1, 4, 4, 4, 2]
    assert rng.randint(16, 256, 7).tolist() == [227, 37, 52, 103, 86, 232, 104]
