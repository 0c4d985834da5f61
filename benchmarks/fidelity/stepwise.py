"""Issue 35 (fidelity): jnas's training loop against a PyTorch loop, step by step.

The same network (a release MobileNetV2, built from jnas's IR by
benchmarks/torch_ir.py), the same initial weights (jnas's init copied into the
torch module) and the same batches (jnas's own loader: the exact augmented,
normalised batches of `pipeline.iterate`, fed to both). jnas trains through
its own engine (`BucketTrainer` with the reproduce recipe of
experiments/reproduce.py, the plan the search uses on CPU); PyTorch follows
the recipe with its defaults: torch.optim.SGD(lr=0.1, momentum=0.9,
weight_decay=5e-4) on all parameters, CrossEntropyLoss (mean), per-step
CosineAnnealingLR(T_max=391*5) stepped after optimizer.step(), BN momentum 0.1.

Per step: both losses; at chosen steps: every parameter and BN running
statistic (max abs difference, and relative to the leaf's max abs value).

    nice -n 19 python benchmarks/fidelity/stepwise.py --net s6:0 --steps 400 \
        --out /tmp/fidelity/stepwise_s6_0_f32.json
    nice -n 19 python benchmarks/fidelity/stepwise.py --net s6:0 --steps 400 \
        --x64 --out /tmp/fidelity/stepwise_s6_0_f64.json

--x64: jax_enable_x64 and float64 params/activations in both (the batches
are still jnas's float32 batches, cast to float64, identical for both; under
x64 the loader's random stream differs from the float32 run's, which does not
matter here). In float64 the torch lr is set each step to jnas's own lr value
(float32 0.1 times optax's cosine factor) so that only the maths differ;
--torch_lr=exact uses the double formula instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
)

parser = argparse.ArgumentParser()
parser.add_argument("--net", default="s6:0")
parser.add_argument("--steps", type=int, default=400)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--x64", action="store_true")
parser.add_argument("--torch_lr", default="auto", choices=("auto", "exact", "jnas"))
parser.add_argument(
    "--mode",
    default="free",
    choices=("free", "forced"),
    help="free: two independent trajectories from the same init; forced: before "
    "every step torch's params, BN stats and momentum are set to jnas's, so each "
    "step's maths are compared without the chaotic growth of earlier differences",
)
parser.add_argument(
    "--start_step",
    type=int,
    default=0,
    help="loader step to start at (forced mode: e.g. 385 reaches the partial batch at 390 at once)",
)
parser.add_argument(
    "--eval", action="store_true", help="test accuracy of both at the end"
)
parser.add_argument("--compare_every", type=int, default=10)
parser.add_argument("--data_dir", default="/work/shared/datasets/cifar10-jpeg.tar.gz")
parser.add_argument("--out", required=True)
args = parser.parse_args()

import jax  # noqa: E402

if args.x64:
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import torch_ir  # noqa: E402

from experiments import reproduce  # noqa: E402
from jnas import data, spaces  # noqa: E402
from jnas.data import pipeline  # noqa: E402
from jnas.population import buckets, engine  # noqa: E402
from jnas.search import config as config_lib  # noqa: E402

torch.set_num_threads(1)


def _tensor(value, like):  # torch_ir._tensor, keeping float64 values
    array = np.array(value, dtype=np.float64, order="C", copy=True)
    if tuple(array.shape) != tuple(like.shape):
        raise ValueError(f"shape {array.shape} does not match {tuple(like.shape)}")
    return torch.from_numpy(array).to(like.dtype)


torch_ir._tensor = _tensor
DT = jnp.float64 if args.x64 else jnp.float32
TDT = torch.float64 if args.x64 else torch.float32

cfg = reproduce.get_config("phase1")
law, index = args.net.split(":")
arch = spaces.sample("mobilenetv2", law, int(index))
recipe = config_lib.make_recipe(cfg)
if args.x64:  # the same recipe, float64 model
    recipe = engine.Recipe(
        tx=recipe.tx,
        schedule=recipe.schedule,
        model_options=(("dtype", jnp.float64), ("param_dtype", jnp.float64)),
    )
bucket = buckets.make_bucket([arch])
strategy, impl = engine.default_plan(bucket)
trainer = engine.BucketTrainer(
    bucket,
    recipe,
    keys=[jax.random.key(args.seed)],
    lrs=[cfg.train.lr],
    strategy=strategy,
    conv_impl=impl,
)
print(f"{args.net}: plan {strategy}/{impl}, dtype {DT.__name__}", flush=True)

# Data: the reproduce config's normalisation constants, all 50,000 images.
x, y, *_ = data.load("cifar10", "train", data_dir=args.data_dir)
meta = type("M", (), {"mean": tuple(cfg.data.mean), "std": tuple(cfg.data.std)})
ds = pipeline.put_on_device(x, y, meta)
batches = pipeline.iterate(
    ds,
    jax.random.key(1000 + args.seed),
    batch_size=cfg.train.batch_size,
    num_steps=args.steps,
    start_step=args.start_step,
    augment=True,
    dtype=jnp.float32,
    keep_last=True,
)

# Torch: the same network and initial weights.
module = torch_ir.build(arch)
v0 = trainer.variables(0)
torch_ir.load_jnas_variables(module, v0, arch)
module = module.to(TDT)
# (load_jnas_variables goes through float32: exact for jnas's init, whose
# float64 values are float32 noise times a float32 bound; `init` checks it.)
module.train()
total = cfg.train.steps
opt = torch.optim.SGD(
    module.parameters(),
    lr=cfg.train.lr,
    momentum=cfg.train.momentum,
    weight_decay=cfg.train.weight_decay,
)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
loss_fn = torch.nn.CrossEntropyLoss()
torch_lr = (
    args.torch_lr if args.torch_lr != "auto" else ("jnas" if args.x64 else "exact")
)


_lr_fn = jax.jit(lambda s: jnp.asarray(cfg.train.lr, jnp.float32) * recipe.schedule(s))


def jnas_lr(step: int) -> float:
    """The lr train_step applies at its step `step` (float32 lr times the
    schedule of an int32 step, as `-state.lr * schedule(state.step)`)."""
    return float(_lr_fn(jnp.asarray(step, jnp.int32)))


def flat(tree) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(v, np.float64).ravel()
            for _, v in sorted(
                jax.tree_util.tree_leaves_with_path(tree),
                key=lambda kv: jax.tree_util.keystr(kv[0]),
            )
        ]
    )


def jnas_momentum() -> dict:
    s = engine.unstack(trainer.states, 0)
    trace = s.opt_state[1].trace
    return buckets.extract(bucket, 0, {"params": trace, "batch_stats": s.batch_stats})[
        "params"
    ]


def sync_torch_to_jnas() -> None:
    """Torch's params, BN stats and momentum buffers := jnas's current ones."""
    torch_ir.load_jnas_variables(module, trainer.variables(0), arch)
    scratch = torch_ir.build(arch).to(TDT)
    torch_ir.load_jnas_variables(
        scratch,
        {"params": jnas_momentum(), "batch_stats": trainer.variables(0)["batch_stats"]},
        arch,
    )
    with torch.no_grad():
        for p, m in zip(module.parameters(), scratch.parameters(), strict=True):
            opt.state[p]["momentum_buffer"] = m.detach().clone()


def compare() -> dict:
    """Max |jnas - torch| per kind of leaf, absolute and relative."""
    vj = trainer.variables(0)
    vt = torch_ir.jnas_variables(module, arch)
    out = {}
    for kind in ("params", "batch_stats"):
        lj = jax.tree_util.tree_leaves_with_path(vj[kind])
        lt = dict(jax.tree_util.tree_leaves_with_path(vt[kind]))
        worst_abs, worst_rel, where = 0.0, 0.0, ""
        for path, a in lj:
            a = np.asarray(a, np.float64)
            b = np.asarray(lt[path], np.float64)
            d = float(np.max(np.abs(a - b)))
            r = d / max(float(np.max(np.abs(a))), 1e-30)
            worst_abs = max(worst_abs, d)
            if r > worst_rel:
                worst_rel, where = r, jax.tree_util.keystr(path)
        out[kind] = {"max_abs": worst_abs, "max_rel": worst_rel, "worst_leaf": where}
    return out


init_cmp = compare()
print("init:", init_cmp, flush=True)
records = []
start = time.time()


def dump(final: bool = False, test=None) -> None:
    result = {
        "complete": final,
        "test_accuracy": test,
        "net": args.net,
        "dtype": DT.__name__,
        "plan": [strategy, impl],
        "torch_lr": torch_lr,
        "mode": args.mode,
        "start_step": args.start_step,
        "torch_version": torch.__version__,
        "jax_version": jax.__version__,
        "init": init_cmp,
        "records": records,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


for step, (images, labels) in enumerate(batches, args.start_step):
    xb = np.asarray(images)
    yb = np.asarray(labels)
    if args.mode == "forced":
        before = flat(trainer.variables(0)["params"])
        sync_torch_to_jnas()
    # jnas
    metrics = trainer.step(jnp.asarray(xb, DT), jnp.asarray(yb))
    loss_j = float(np.asarray(metrics["loss"])[0])
    # torch
    if torch_lr == "jnas":
        for g in opt.param_groups:
            g["lr"] = jnas_lr(step - args.start_step)
    lr_t = opt.param_groups[0]["lr"]
    xt = torch.from_numpy(xb).permute(0, 3, 1, 2).contiguous().to(TDT)
    yt = torch.from_numpy(yb.astype(np.int64))
    opt.zero_grad(set_to_none=True)
    logits = module(xt)
    loss = loss_fn(logits, yt)
    loss.backward()
    opt.step()
    sched.step()
    loss_t = float(loss.item())
    rec = {
        "step": step,
        "batch": int(xb.shape[0]),
        "loss_jnas": loss_j,
        "loss_torch": loss_t,
        "dloss": loss_j - loss_t,
        "lr_jnas": jnas_lr(step - args.start_step),
        "lr_torch": lr_t,
    }
    if (
        step < 10
        or step % args.compare_every == 0
        or step == args.steps - 1
        or xb.shape[0] != cfg.train.batch_size
        or step in (391, 392)
    ):
        rec.update(compare())
    if args.mode == "forced":  # the step's update, jnas against torch
        pj = flat(trainer.variables(0)["params"])
        pt = flat(torch_ir.jnas_variables(module, arch)["params"])
        sj = flat(trainer.variables(0)["batch_stats"])
        st = flat(torch_ir.jnas_variables(module, arch)["batch_stats"])
        rec["update_rel_err"] = float(
            np.linalg.norm(pj - pt) / np.linalg.norm(pj - before)
        )
        rec["params_rel_err"] = float(np.linalg.norm(pj - pt) / np.linalg.norm(pj))
        rec["stats_rel_err"] = float(np.linalg.norm(sj - st) / np.linalg.norm(sj))
    records.append(rec)
    if step % 25 == 0:
        dump()
    if step < 5 or step % 25 == 0 or xb.shape[0] != cfg.train.batch_size:
        msg = f"step {step} b={xb.shape[0]} loss j={loss_j:.7f} t={loss_t:.7f} d={loss_j - loss_t:+.2e}"
        if "update_rel_err" in rec:
            msg += f" update rel err {rec['update_rel_err']:.2e} stats rel err {rec['stats_rel_err']:.2e}"
        elif "params" in rec:
            msg += f" params rel {rec['params']['max_rel']:.2e} bn rel {rec['batch_stats']['max_rel']:.2e}"
        print(msg, f"({time.time() - start:.0f}s)", flush=True)

test = None
if args.eval:  # both networks on the 10,000 test images, eval-mode BatchNorm
    tx_, ty_, *_ = data.load("cifar10", "test", data_dir=args.data_dir)
    tds = pipeline.put_on_device(tx_, ty_, meta)
    acc_j = float(engine.evaluate(trainer, tds, batch_size=500)[0])
    module.eval()
    correct = 0
    with torch.no_grad():
        for imgs, labs, mask in pipeline.eval_batches(tds, 500):
            xt = (
                torch.from_numpy(np.array(imgs))
                .permute(0, 3, 1, 2)
                .contiguous()
                .to(TDT)
            )
            pred = module(xt).argmax(1).numpy()
            correct += int(np.sum((pred == np.asarray(labs)) & np.asarray(mask)))
    test = {"jnas": acc_j, "torch": correct / len(ty_)}
    print("test accuracy:", test, flush=True)

dump(True, test)
print("wrote", args.out, f"{time.time() - start:.0f}s", flush=True)
