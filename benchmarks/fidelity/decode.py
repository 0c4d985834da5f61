"""Issue 35 (fidelity): jnas's decoded CIFAR-10 against torchvision's ImageFolder way.

torchvision's ImageFolder (what a PyTorch run on the JPEG copy uses): classes =
sorted folder names, samples sorted by file name within a class, each image
``PIL.Image.open(f).convert("RGB")``. Here the same is done straight from the
archive for every `--every`-th image of each split and compared with
``jnas.data.load``'s arrays (pixels and labels).

    nice -n 19 python benchmarks/fidelity/decode.py --out /tmp/fidelity/decode.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
from jnas import data  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--data_dir", default="/work/shared/datasets/cifar10-jpeg.tar.gz")
parser.add_argument("--every", type=int, default=25)
parser.add_argument("--out", required=True)
args = parser.parse_args()

members = {}
with tarfile.open(args.data_dir) as tar:
    for m in tar:
        if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
            parts = m.name.split("/")
            split, cls, name = parts[-3], parts[-2], parts[-1]
            members.setdefault(split, []).append((cls, name, tar.extractfile(m).read()))
out = {}
for split in ("train", "test"):
    x, y, _ = data.load("cifar10", split, data_dir=args.data_dir)
    classes = sorted({c for c, _, _ in members[split]})
    samples = sorted(members[split], key=lambda t: (t[0], t[1]))
    assert len(samples) == len(x), (len(samples), len(x))
    worst, wrong_labels, checked, modes = 0, 0, 0, set()
    for i in range(0, len(samples), args.every):
        cls, name, blob = samples[i]
        im = Image.open(io.BytesIO(blob))
        modes.add(im.mode)
        ref = np.asarray(im.convert("RGB"))
        worst = max(worst, int(np.max(np.abs(ref.astype(int) - x[i].astype(int)))))
        wrong_labels += int(classes.index(cls) != int(y[i]))
        checked += 1
    out[split] = {
        "n": len(x),
        "checked": checked,
        "max_abs_pixel_diff": worst,
        "label_mismatches": wrong_labels,
        "classes": classes,
        "jpeg_modes": sorted(modes),
        "pixel_mean_over_split": (x.reshape(-1, 3).mean(0) / 255).round(4).tolist(),
        "pixel_std_over_split": (x.reshape(-1, 3).std(0) / 255).round(4).tolist(),
    }
    print(split, out[split], flush=True)
os.makedirs(os.path.dirname(args.out), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
