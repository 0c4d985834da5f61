"""Issue 35 (fidelity): jnas's loader and schedule against torchvision / PyTorch.

1. Same images, same draws: jnas's `pipeline.iterate` batches (reproduce
   recipe: keep_last, augment, the paper's mean/std) against torchvision's
   standard CIFAR pipeline (RandomCrop(32, padding=4), RandomHorizontalFlip,
   ToTensor, Normalize) applied to the same images (PIL) with jnas's own crop
   offsets and flips (recomputed from the loader's key as `next_batch` draws
   them): elementwise difference.
2. The draws' distributions: a probe image whose pixels encode their own
   coordinates (R = 10 + 7 col, G = 10 + 7 row, B = 255) goes through both
   pipelines N times; each output is decoded back into (row offset, column
   offset, flipped) and the padding's normalised value. Compared: offset
   histograms (uniform over 0..8?), flip rate, independence, per-sample draws.
3. The schedule: jnas's lr at every step t of 5 epochs against
   0.1 (1 + cos(pi t / T)) / 2 and against torch's CosineAnnealingLR stepped
   after each optimizer.step().
4. Epoch structure: every image once per epoch, 391 steps, last batch 80.

    nice -n 19 python benchmarks/fidelity/loader.py --out /tmp/fidelity/loader.json

Needs torchvision's Python code: ``pip install --no-deps torchvision==0.28.0``
(uninstall it afterwards: a plain ``import torchvision`` then fails). It is
imported from its package folder without its compiled extension (the PyPI
wheel's ops do not load against the CPU torch; the transforms used here are
pure Python/PIL).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import types

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

_root = importlib.util.find_spec("torchvision").submodule_search_locations[0]
_pkg = types.ModuleType("torchvision")
_pkg.__path__ = [_root]
sys.modules["torchvision"] = _pkg
import torchvision.transforms as T  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
from experiments import reproduce  # noqa: E402
from jnas import data  # noqa: E402
from jnas.data import pipeline  # noqa: E402
from jnas.search import config as config_lib  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--data_dir", default="/work/shared/datasets/cifar10-jpeg.tar.gz")
parser.add_argument("--steps", type=int, default=30, help="batches compared in (1)")
parser.add_argument("--probe_n", type=int, default=20000)
parser.add_argument("--out", required=True)
args = parser.parse_args()
torch.set_num_threads(1)

cfg = reproduce.get_config("phase1")
MEAN, STD = tuple(cfg.data.mean), tuple(cfg.data.std)
B = cfg.train.batch_size
result = {}

# -- 1. same images, same draws -------------------------------------------------
x, y, *_ = data.load("cifar10", "train", data_dir=args.data_dir)
N = len(x)
meta = type("M", (), {"mean": MEAN, "std": STD})
ds = pipeline.put_on_device(x, y, meta)
key = jax.random.key(1234)
tv_post = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
per_epoch, tail = pipeline.batch_shapes(N, B, True)
perm_key, aug_key = jax.random.split(key)
# steps of epoch 0, the epoch's last (partial) batch and the first of epoch 1
steps = list(range(args.steps)) + [per_epoch - 1, per_epoch]
worst, worst_label = 0.0, 0
batches = {}
for s, (imgs, labs) in enumerate(
    pipeline.iterate(ds, key, batch_size=B, num_steps=per_epoch + 1, keep_last=True)
):
    if s in steps:
        batches[s] = (np.asarray(imgs), np.asarray(labs))
for s in steps:
    imgs, labs = batches[s]
    epoch = s // per_epoch
    perm = np.asarray(
        pipeline.epoch_permutation(jax.random.fold_in(perm_key, epoch), N)
    )
    take = tail if (s + 1) % per_epoch == 0 else B
    start = (s % per_epoch) * B
    idx = perm[start : start + take]
    crop_key, flip_key = jax.random.split(jax.random.fold_in(aug_key, s))
    offsets = np.asarray(jax.random.randint(crop_key, (take, 2), 0, 9))
    flips = np.asarray(jax.random.bernoulli(flip_key, 0.5, (take,)))
    ref = []
    for k, i in enumerate(idx):
        im = TF.pad(Image.fromarray(x[i]), 4, fill=0, padding_mode="constant")
        im = TF.crop(im, int(offsets[k, 0]), int(offsets[k, 1]), 32, 32)
        if flips[k]:
            im = TF.hflip(im)
        ref.append(tv_post(im).permute(1, 2, 0).numpy())
    ref = np.stack(ref)
    assert imgs.shape == ref.shape, (imgs.shape, ref.shape)
    worst = max(worst, float(np.max(np.abs(imgs - ref))))
    worst_label = max(worst_label, int(np.sum(labs != y[idx])))
result["same_draws"] = {
    "steps_compared": steps,
    "batch_sizes": {str(s): int(batches[s][0].shape[0]) for s in steps},
    "max_abs_diff_vs_torchvision": worst,
    "label_mismatches": worst_label,
}
print("1. same draws:", result["same_draws"], flush=True)

# -- 4. epoch structure ---------------------------------------------------------
perm0 = np.asarray(pipeline.epoch_permutation(jax.random.fold_in(perm_key, 0), N))
result["epoch"] = {
    "steps_per_epoch": per_epoch,
    "last_batch": tail,
    "perm_is_permutation": bool(np.array_equal(np.sort(perm0), np.arange(N))),
}
print("4. epoch:", result["epoch"], flush=True)

# -- 2. distributions of the draws ----------------------------------------------
probe = np.zeros((32, 32, 3), np.uint8)
probe[..., 0] = 10 + 7 * np.arange(32)[None, :]
probe[..., 1] = 10 + 7 * np.arange(32)[:, None]
probe[..., 2] = 255
mean = np.asarray(MEAN, np.float32)
std = np.asarray(STD, np.float32)


def decode(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(row offset, col offset, flipped, padding values) of normalised outputs."""
    px = np.rint((batch * std + mean) * 255).astype(int)  # back to pixels
    dy, dx, fl, pads = [], [], [], set()
    for k, im in enumerate(px):
        real = im[..., 2] == 255
        rows = np.where(real.any(1))[0]
        cols = np.where(real.any(0))[0]
        r0, c0 = rows[0], cols[0]
        g = im[r0, c0, 1]
        src_row = (g - 10) // 7  # source row at output row r0
        dy.append(src_row - r0 + 4)
        rvals = im[r0, cols, 0]
        flipped = len(cols) > 1 and rvals[1] < rvals[0]
        src_col_at_c0 = (rvals[0] - 10) // 7
        # unflipped: out col c = src col (c + dx - 4); flipped: out col c =
        # src col (31 - c) of the cropped image's mirror
        if flipped:
            # cropped[:, w] = padded[:, dx + w]; output[:, c] = cropped[:, 31 - c]
            dx.append(src_col_at_c0 + 4 - (31 - c0))
        else:
            dx.append(src_col_at_c0 + 4 - c0)
        fl.append(bool(flipped))
        if (~real).any():
            pads.add(tuple(np.round(batch[k][~real][0], 5).tolist()))
    return np.asarray(dy), np.asarray(dx), np.asarray(fl), sorted(pads)


n = args.probe_n
pds = pipeline.put_on_device(
    np.repeat(probe[None], 64, 0), np.zeros(64, np.int32), meta
)
jb = []
state = pipeline.init_loader(jax.random.key(7), 64)
while sum(len(b) for b in jb) < n:
    state, im, _ = pipeline.next_batch(pds, state, batch_size=64, keep_last=False)
    jb.append(np.asarray(im))
jb = np.concatenate(jb)[:n]
torch.manual_seed(0)
tv = T.Compose(
    [
        T.RandomCrop(32, padding=4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ]
)
pil = Image.fromarray(probe)
tb = np.stack([tv(pil).permute(1, 2, 0).numpy() for _ in range(n)])


def summary(batch):
    dy, dx, fl, pads = decode(batch)
    hy = np.bincount(dy, minlength=9).tolist()
    hx = np.bincount(dx, minlength=9).tolist()
    chi = lambda h: float(sum((c - n / 9) ** 2 / (n / 9) for c in h))  # noqa: E731
    # within-batch variation (first 64 samples = one jnas batch)
    return {
        "dy_hist": hy,
        "dx_hist": hx,
        "chi2_dy_8dof": chi(hy),
        "chi2_dx_8dof": chi(hx),
        "flip_rate": float(fl.mean()),
        "corr_dy_dx": float(np.corrcoef(dy, dx)[0, 1]),
        "corr_dx_flip": float(np.corrcoef(dx, fl)[0, 1]),
        "distinct_draws_in_first_64": len(
            set(zip(dy[:64], dx[:64], fl[:64], strict=True))
        ),
        "padding_values_normalised": pads,
        "pixel_mean_per_channel": batch.reshape(-1, 3).mean(0).round(5).tolist(),
    }


result["draws"] = {"jnas": summary(jb), "torchvision": summary(tb), "n": n}
result["draws"]["expected_black_padding"] = ((0 - mean) / std).round(5).tolist()
result["draws"]["mean_colour_would_be"] = [0.0, 0.0, 0.0]
print("2. draws:", json.dumps(result["draws"], indent=1), flush=True)

# -- 3. schedule ------------------------------------------------------------------
Tsteps = cfg.train.steps
recipe = config_lib.make_recipe(cfg)
lr_j = np.asarray(
    [np.float32(cfg.train.lr) * np.asarray(recipe.schedule(t)) for t in range(Tsteps)],
    np.float64,
)
formula = np.asarray(
    [0.1 * (1 + math.cos(math.pi * t / Tsteps)) / 2 for t in range(Tsteps)]
)
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=5e-4)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=Tsteps)
lr_t = []
for _ in range(Tsteps):
    lr_t.append(opt.param_groups[0]["lr"])  # the lr optimizer.step() uses now
    opt.step()
    sch.step()
lr_t = np.asarray(lr_t)
result["schedule"] = {
    "T": Tsteps,
    "jnas_first": lr_j[:3].tolist(),
    "jnas_last": lr_j[-3:].tolist(),
    "torch_first": lr_t[:3].tolist(),
    "torch_last": lr_t[-3:].tolist(),
    "max_abs_jnas_vs_formula": float(np.max(np.abs(lr_j - formula))),
    "max_abs_torch_vs_formula": float(np.max(np.abs(lr_t - formula))),
    "max_rel_jnas_vs_torch_(t<T-5)": float(
        np.max(np.abs(lr_j - lr_t)[: Tsteps - 5] / lr_t[: Tsteps - 5])
    ),
}
print("3. schedule:", result["schedule"], flush=True)
os.makedirs(os.path.dirname(args.out), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(
        result,
        f,
        indent=1,
        default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o),
    )
print("wrote", args.out)
