"""Issue 35 (fidelity): jnas's test evaluation against PyTorch's, same weights.

Trains a release network in jnas (reproduce recipe, engine, `--steps` steps of
jnas's loader), then evaluates the trained weights on the 10,000 test images
twice: jnas's `engine.evaluate` (what the search records) and the torch_ir
module in eval mode with the same variables copied in (what a PyTorch run
reports). Compares accuracies and logits.

    nice -n 19 python benchmarks/fidelity/eval_check.py --net s6:0 --steps 391 \
        --out /tmp/fidelity/eval_s6_0.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import torch_ir  # noqa: E402

from experiments import reproduce  # noqa: E402
from jnas import data, nn, spaces  # noqa: E402
from jnas.data import pipeline  # noqa: E402
from jnas.population import buckets, engine  # noqa: E402
from jnas.search import config as config_lib  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--net", default="s6:0")
parser.add_argument("--steps", type=int, default=391)
parser.add_argument("--data_dir", default="/work/shared/datasets/cifar10-jpeg.tar.gz")
parser.add_argument("--out", required=True)
args = parser.parse_args()
torch.set_num_threads(1)

cfg = reproduce.get_config("phase1")
law, index = args.net.split(":")
arch = spaces.sample("mobilenetv2", law, int(index))
recipe = config_lib.make_recipe(cfg)
bucket = buckets.make_bucket([arch])
strategy, impl = engine.default_plan(bucket)
trainer = engine.BucketTrainer(
    bucket,
    recipe,
    keys=[jax.random.key(0)],
    lrs=[cfg.train.lr],
    strategy=strategy,
    conv_impl=impl,
)
meta = type("M", (), {"mean": tuple(cfg.data.mean), "std": tuple(cfg.data.std)})
x, y, *_ = data.load("cifar10", "train", data_dir=args.data_dir)
ds = pipeline.put_on_device(x, y, meta)
history = engine.train_bucket(
    trainer,
    ds,
    steps=args.steps,
    batch_size=cfg.train.batch_size,
    data_key=jax.random.key(1),
    log_every=cfg.train.log_every,
    augment=True,
    keep_last=True,
)
print("trained:", history[-1], flush=True)
tx_, ty_, *_ = data.load("cifar10", "test", data_dir=args.data_dir)
tds = pipeline.put_on_device(tx_, ty_, meta)
acc_engine = float(engine.evaluate(trainer, tds, batch_size=cfg.eval_batch_size)[0])

variables = trainer.variables(0)
model = recipe.model(arch, impl)
module = torch_ir.build(arch)
torch_ir.load_jnas_variables(module, variables, arch)
module.eval()
apply = jax.jit(lambda v, im: nn.apply(model, v, im))
worst, cj, ct, agree = 0.0, 0, 0, 0
with torch.no_grad():
    for imgs, labs, mask in pipeline.eval_batches(tds, 500):
        lj = np.asarray(apply(variables, imgs))
        lt = module(
            torch.from_numpy(np.array(imgs)).permute(0, 3, 1, 2).contiguous()
        ).numpy()
        m = np.asarray(mask)
        labs = np.asarray(labs)
        worst = max(worst, float(np.max(np.abs(lj - lt)[m])))
        cj += int(np.sum((lj.argmax(1) == labs) & m))
        ct += int(np.sum((lt.argmax(1) == labs) & m))
        agree += int(np.sum((lj.argmax(1) == lt.argmax(1)) & m))
n = len(ty_)
out = {
    "net": args.net,
    "steps": args.steps,
    "plan": [strategy, impl],
    "train_last_window": {k: np.asarray(v).tolist() for k, v in history[-1].items()},
    "test_acc_engine_evaluate": acc_engine,
    "test_acc_jnas_apply": cj / n,
    "test_acc_torch_eval_same_weights": ct / n,
    "argmax_agreement": agree / n,
    "max_abs_logit_diff": worst,
}
print(out, flush=True)
os.makedirs(os.path.dirname(args.out), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
