"""Issue 35 part 1: the reproduce recipe in a plain PyTorch loop, for pairing.

An independent PyTorch training of one released network under the recipe of
experiments/reproduce.py (phase 1: 5 epochs), written from the recipe, not
from jnas's loop: PyTorch's own initialisation (the modules' defaults), its
own random streams (`torch.manual_seed(seed)`, one generator for shuffling
and augmentation), its own optimiser and schedule. Only two things are shared
with jnas: the network (benchmarks/torch_ir.py builds the module from jnas's
IR; tests/test_torch_ir.py checks it against `jnas.nn` in float64, gradients
included) and the decoded pixels (`jnas.data.load` of the CIFAR-10 archive,
which benchmarks/fidelity/decode.py checked against PIL: no pixel differs),
so the pairing with jnas's seeds compares the training, not the data.

The recipe (experiments/reproduce.py's docstring):
- SGD(lr=0.1, momentum=0.9, weight_decay=5e-4) on every parameter, mean
  cross-entropy; CosineAnnealingLR(T_max=391 * epochs) stepped after every
  optimizer.step();
- batch 128, a fresh permutation every epoch, the last partial batch (80)
  kept (DataLoader(shuffle=True, drop_last=False));
- per sample: zero-pad 4 (uint8, before normalising, as torchvision's
  RandomCrop(32, padding=4) on a PIL image), a random 32x32 crop (offsets
  uniform in 0..8), horizontal flip with p = 0.5, /255, Normalize(mean, std);
- eval-mode BatchNorm on the 10,000 test images after the last epoch.

One thread (`torch.set_num_threads(1)`), as jnas's phase-1 workers ran.

    nice -n 19 python benchmarks/fidelity/torch_train.py --net s6:0 --seed 0 \
        --out results/fidelity/torch_s6_0_seed0.json

Writes {"net", "seed", "epochs", "test_accuracy", "epoch_loss", "seconds",
"torch"} to --out; prints one line per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--net", required=True, help="law:index of MobileNetV2, e.g. s6:0")
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--data_dir", default="/work/shared/datasets/cifar10-jpeg.tar.gz")
parser.add_argument(
    "--init",
    default="torch",
    choices=("torch", "jnas"),
    help="torch: the modules' default initialisation; jnas: jnas.nn.init with "
    "jax.random.key(seed), copied into the module (same distribution, jnas's values)",
)
parser.add_argument(
    "--batches",
    default="torch",
    choices=("torch", "jnas"),
    help="torch: this loop's shuffling and augmentation; jnas: jnas's loader "
    "(pipeline.iterate with jax.random.key(1000 + seed)), the exact batches",
)
parser.add_argument("--out", required=True)
args = parser.parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import torch_ir  # noqa: E402

from experiments import reproduce  # noqa: E402
from jnas import data, spaces  # noqa: E402

torch.set_num_threads(1)
cfg = reproduce.get_config("phase1")
BATCH = cfg.train.batch_size
MEAN = torch.tensor(cfg.data.mean).view(1, 3, 1, 1)
STD = torch.tensor(cfg.data.std).view(1, 3, 1, 1)
PAD, SIZE = 4, 32

law, index = args.net.split(":")
arch = spaces.sample("mobilenetv2", law, int(index))

train_x, train_y, _ = data.load("cifar10", "train", data_dir=args.data_dir)
test_x, test_y, _ = data.load("cifar10", "test", data_dir=args.data_dir)
# NCHW uint8, zero-padded once: padding is black, before normalising.
train_x = torch.from_numpy(np.ascontiguousarray(train_x.transpose(0, 3, 1, 2)))
train_x = torch.nn.functional.pad(train_x, (PAD, PAD, PAD, PAD))
train_y = torch.from_numpy(train_y.astype(np.int64))
test_x = torch.from_numpy(np.ascontiguousarray(test_x.transpose(0, 3, 1, 2)))
test_y = torch.from_numpy(test_y.astype(np.int64))
n = train_x.shape[0]
steps_per_epoch = -(-n // BATCH)

torch.manual_seed(args.seed)  # the module's default initialisation
gen = torch.Generator().manual_seed(args.seed)  # shuffling and augmentation
module = torch_ir.build(arch)
if args.init == "jnas":
    import jax

    from jnas import nn

    variables = nn.init(nn.create_model(arch), jax.random.key(args.seed))
    torch_ir.load_jnas_variables(module, variables, arch)
module.train()
opt = torch.optim.SGD(
    module.parameters(),
    lr=cfg.train.lr,
    momentum=cfg.train.momentum,
    weight_decay=cfg.train.weight_decay,
)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(
    opt, T_max=steps_per_epoch * args.epochs
)
loss_fn = torch.nn.CrossEntropyLoss()
ar = torch.arange(SIZE)


def augment(idx: torch.Tensor) -> torch.Tensor:
    """RandomCrop(32, padding=4) and RandomHorizontalFlip per sample, normalised."""
    b = idx.shape[0]
    top = torch.randint(0, 2 * PAD + 1, (b,), generator=gen)
    left = torch.randint(0, 2 * PAD + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = top[:, None] + ar  # (b, 32)
    cols = left[:, None] + torch.where(flip[:, None], SIZE - 1 - ar, ar)
    x = train_x[
        idx[:, None, None, None],
        torch.arange(3)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    return (x.float() / 255.0 - MEAN) / STD


def jnas_batches():
    """jnas's own training batches (NHWC float32 on its device) as NCHW tensors."""
    import jax

    from jnas.data import pipeline

    x = np.asarray(train_x[:, :, PAD:-PAD, PAD:-PAD].permute(0, 2, 3, 1))
    meta = type("M", (), {"mean": tuple(cfg.data.mean), "std": tuple(cfg.data.std)})
    ds = pipeline.put_on_device(x, train_y.numpy().astype(np.int32), meta)
    for images, labels in pipeline.iterate(
        ds,
        jax.random.key(1000 + args.seed),
        batch_size=BATCH,
        num_steps=steps_per_epoch * args.epochs,
        augment=True,
        keep_last=True,
    ):
        images = torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).copy())
        yield images, torch.from_numpy(np.asarray(labels).astype(np.int64))


def torch_batches():
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            idx = perm[s * BATCH : (s + 1) * BATCH]
            yield augment(idx), train_y[idx]


batches = jnas_batches() if args.batches == "jnas" else torch_batches()
start = time.perf_counter()
epoch_loss = []
for epoch in range(args.epochs):
    total, seen = 0.0, 0
    for _ in range(steps_per_epoch):
        images, labels = next(batches)
        logits = module(images)
        loss = loss_fn(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * labels.shape[0]
        seen += labels.shape[0]
    epoch_loss.append(total / seen)
    print(
        f"{args.net} seed {args.seed} epoch {epoch + 1}: loss {total / seen:.4f}, "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )

module.eval()
correct = 0
with torch.no_grad():
    for s in range(0, test_x.shape[0], 500):
        x = (test_x[s : s + 500].float() / 255.0 - MEAN) / STD
        correct += int((module(x).argmax(1) == test_y[s : s + 500]).sum())
acc = correct / test_x.shape[0]
seconds = time.perf_counter() - start
print(f"{args.net} seed {args.seed}: test accuracy {acc:.4f} ({seconds:.0f} s)")
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(
        {
            "net": args.net,
            "seed": args.seed,
            "init": args.init,
            "batches": args.batches,
            "epochs": args.epochs,
            "test_accuracy": acc,
            "epoch_loss": epoch_loss,
            "seconds": seconds,
            "torch": torch.__version__,
        },
        f,
        indent=1,
    )
