"""
Step 3 of the lesson: train a model on the prepared text and watch the loss fall.

    python prepare.py                   # once: data/train.bin, val.bin and vocab.json
    python train.py                     # the GPT, with the recipe for this machine
    python train.py --model bigram      # the bigram baseline (seconds)
    python train.py --preset lecture    # the lecture's model and its 5,000 steps (wants a GPU)
    python train.py --resume            # continue the run saved in out/last.pt
    python generate.py                  # sample from out/ckpt.pt, the run's best weights

The loop is the lecture's: draw a random batch, predict every next character, measure the loss,
backpropagate, step; every eval_interval steps estimate both losses and keep the best weights.
Beyond the lecture: a warmup and cosine decay of the learning rate, gradient clipping, weight
decay on matrices only, Muon, and bfloat16 (or float16 with a loss scaler) where it is fast.
Read down to the divider "The lesson ends here"; below it is machinery (devices, the data's
checks, the run's files, Ctrl-C, torchrun, the loss plot, the command line).
"""

import argparse
import contextlib
import csv
import io
import json
import math
import os
import pickle
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from bigram import BigramLanguageModel
from gpt import GPT, PRESETS, GPTConfig

CPU_BFLOAT16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # in hardware

# Recipes: every setting of a run, as plain dicts; flags override them. `python train.py` takes
# "lecture" on CUDA and "cpu" elsewhere. The GPT's sizes come from gpt.py.
RECIPES = {
    # The lecture's bigram.py: a constant learning rate is all a lookup table needs.
    "bigram": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=200,
                   learning_rate=1e-2, min_lr=1e-2, warmup_iters=0, weight_decay=0.0, grad_clip=0.0,
                   optimizer="adamw", time_budget=None),
    # The lecture's model and batch (B 64, T 256) for its 5,000 steps, at nanoGPT's settings for it
    # (the lecture: a constant 3e-4): a peak of 1e-3, cosine decay to 1e-4, weight decay 0.1, clip 1.
    "lecture": dict(**PRESETS["lecture"], batch_size=64, max_iters=5000, eval_interval=500,
                    eval_iters=200, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.1,
                    grad_clip=1.0, optimizer="adamw", time_budget=None, attention="fused"),
    # What full runs found best for 10 minutes on 2 CPU cores: a smaller model that takes more
    # steps, and Muon, which learns more per step and then overfits, which dropout 0.1 holds back.
    # It trains 9.5 minutes, whatever a step costs here (max_iters only draws the schedule). Muon
    # works in bfloat16, emulated on a CPU without it: there its step took 4x AdamW's whole step.
    "cpu": dict(**PRESETS["cpu"], batch_size=48, max_iters=1100, eval_interval=200, eval_iters=20,
                learning_rate=2e-3, min_lr=2e-4, warmup_iters=100, weight_decay=0.1, grad_clip=1.0,
                optimizer="muon" if CPU_BFLOAT16 else "adamw", time_budget=9.5, attention="explicit"),
}
GPT_SIZES = ("block_size", "n_layer", "n_head", "n_embd", "dropout")


def get_batch(data, batch_size, block_size, device, generator=None):
    """batch_size random chunks of data -> inputs x (B, T) and targets y (B, T), y = x shifted by one:
    a chunk of block_size + 1 characters holds block_size examples, with contexts 1 to block_size long."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,) chunk starts
    offsets = ix.numpy()[:, None] + np.arange(block_size + 1)                     # (B, T + 1)
    chunk = torch.from_numpy(data[offsets].astype(np.int64))                      # (B, T + 1)
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()                  # (B, T), (B, T)
    return x.to(device), y.to(device)


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, device, autocast):
    """Mean loss over eval_iters batches of each split -> {"train": float, "val": float}. The batches
    come from their own generator, seeded alike each time: every evaluation scores the same text,
    and training's random numbers are untouched. model.eval() turns dropout off while we measure."""
    model.eval()
    out = {}
    for name, data in splits.items():
        generator = torch.Generator().manual_seed(1234)
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size, block_size, device, generator)
            with autocast:
                _, loss = model(x, y)
            losses[k] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


def configure_optimizers(model, optimizer, learning_rate, weight_decay, muon_lr_scale=2.0):
    """-> a list of torch optimisers that together train every parameter once.

    AdamW, the lecture's optimiser, trains everything, or with optimizer="muon" all but the blocks'
    weight matrices. Weight decay pulls weights towards zero; biases and layer-norm gains, one
    number per channel, are left alone. beta2 0.99 forgets the noisy first steps sooner than 0.999.
    Muon (Jordan et al., 2024): a matrix's momentum is dominated by a few directions, and a plain
    step moves it mostly along those. Muon steps along the nearest orthogonal matrix instead (the
    same directions, all at one rate; five Newton-Schulz iterations find it), and learns more per
    step. "match_rms_adamw" sizes its steps like AdamW's; its matrices take muon_lr_scale x the rate.
    """
    matrices = [p for b in model.blocks for p in b.parameters() if p.dim() == 2] if optimizer == "muon" else []
    rest = [p for p in model.parameters() if not any(p is m for m in matrices)]
    adamw = torch.optim.AdamW([   # "lr_scale": how the loop sets each group's lr from the schedule
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
    ], lr=learning_rate, betas=(0.9, 0.99))
    if not matrices:
        return [adamw]
    muon = torch.optim.Muon([{"params": matrices, "lr_scale": muon_lr_scale}], lr=learning_rate * muon_lr_scale,
                            weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    return [muon, adamw]


def get_lr(step, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """Linear warmup for warmup_iters steps (early estimates of the gradient's scale are poor), then
    cosine decay to min_lr at lr_decay_iters (small late steps settle into a minimum)."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / warmup_iters
    if step >= lr_decay_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, lr_decay_iters - warmup_iters)      # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def train(args, saved=None):
    """Train as args say; saved: the contents of last.pt, to resume. -> the best validation loss."""
    device, dtype, ranks = set_up(args)   # says which device and number format, and why
    train_data, val_data, chars = load_data(args.data_dir, args.block_size)
    model = build_model(model_args(args, chars), args.attention == "fused").to(device)
    optimizers = configure_optimizers(model, args.optimizer, args.learning_rate, args.weight_decay)
    # Mixed precision (nanoGPT's two lines): the matrix multiplies in bfloat16 or float16. float16's
    # small range needs the scaler: backward runs on the loss times a large scale, so that tiny
    # gradients do not round to zero; the step divides it out again, or skips a step whose
    # gradients overflowed. In float32 and bfloat16 the scaler passes every call through.
    autocast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    iter_num, best_val_loss, best_iter, elapsed = 0, math.inf, None, 0.0
    if saved is not None:   # --resume: the saved weights, optimisers, step, clock and random state
        iter_num, best_val_loss, best_iter, elapsed = resume(saved, model, optimizers, scaler, chars, args, device)
    lock = claim_out_dir(args, saved) if ranks.master else None   # one run at a time in --out-dir
    step_model = wrap_for_step(model, args, ranks, iter_num)   # the model, or a torch.compile or DDP wrapper
    start = time.monotonic() - elapsed   # the clock counts the runs this one resumes
    bad_losses = 0   # losses in a row that were inf or NaN
    with stop_on_signals() as stop, progress_bar(args, iter_num, ranks) as progress:
        while True:
            # The end: after max_iters steps (the lecture's `for iter in range(max_iters)`), or when
            # the time budget is spent. Every eval_interval steps and at the end: measure, log, save.
            share = time_used(start, args.time_budget, ranks) if args.time_budget else iter_num / args.max_iters
            done = share >= 1
            resumed_here = saved is not None and iter_num == saved["iter_num"]   # evaluated before
            if (iter_num % args.eval_interval == 0 or done) and ranks.master and not resumed_here:
                losses = estimate_loss(model, {"train": train_data, "val": val_data}, args.eval_iters,
                                       args.batch_size, args.block_size, device, autocast)
                progress.write(f"step {iter_num}: train loss {losses['train']:.4f}, "
                               f"val loss {losses['val']:.4f} ({time.monotonic() - start:.1f} s)")
                improved = losses["val"] < best_val_loss
                if improved:
                    best_val_loss, best_iter = losses["val"], iter_num
                save_run(args, model, optimizers, scaler, chars, iter_num, best_val_loss, best_iter,
                         time.monotonic() - start, losses, improved)
            stop.signal = agree(stop.signal, ranks)   # under torchrun: any rank's signal stops them all
            if done or stop.signal:   # Ctrl-C or SIGTERM: stop after a whole step, and save
                break

            # One step of gradient descent on one random batch, at the schedule's learning rate
            # (with a time budget, the schedule follows the share of the time used, not the step).
            schedule_step = min(share, 1) * args.max_iters if args.time_budget else iter_num
            lr = get_lr(schedule_step, args.learning_rate, args.min_lr, args.warmup_iters, args.max_iters)
            x, y = get_batch(train_data, args.batch_size, args.block_size, device)
            with autocast:
                logits, loss = step_model(x, y)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()                  # loss.backward(), through the scaler
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                scaler.unscale_(optimizer)                 # the true gradients, for the clip below
            if args.grad_clip > 0:
                # Cap the gradient's length, so one unlucky batch cannot throw the weights far.
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            for optimizer in optimizers:
                scaler.step(optimizer)                     # optimizer.step()
            scaler.update()
            # A loss that becomes inf or NaN has diverged: stop. In float16 one overflowing batch
            # is only a step the scaler skipped; a loss that stays so for 20 steps is divergence.
            loss_value = loss.item()
            bad_losses = 0 if math.isfinite(loss_value) else bad_losses + 1
            if bad_losses >= (20 if scaler.is_enabled() else 1):
                fail(f"the loss became {loss_value} at step {iter_num}; stopped. {args.out_dir}/ckpt.pt keeps "
                     f"the best weights and last.pt the last good state; try a lower --learning-rate")
            iter_num += 1
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}", refresh=False)
            progress.update()
    finish(args, model, optimizers, scaler, chars, iter_num, best_val_loss, best_iter, time.monotonic() - start,
           stop.signal, ranks, lock)
    return best_val_loss


# =================================================================================================
# The lesson ends here: the recipes, the batches, the loss estimate, the optimisers, the schedule
# and the loop are above; the models are in bigram.py and gpt.py. Below is the machinery.
# =================================================================================================

def fail(message):   # a mistake the user can fix: one line naming the fix, exit status 1, no traceback
    raise SystemExit(f"train.py: error: {message}")


def set_up(args):
    """The device and number format, each with why; torchrun's process group; a step that cannot
    fit in memory refused. -> (device, dtype, ranks)"""
    device, why_device = pick_device(args.device)
    ranks = join_torchrun(device)
    if ranks.size > 1 and device.type == "cuda":
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    dtype, why_dtype = pick_dtype(args.dtype, device)
    if ranks.master:
        print(f"device: {device} ({why_device}), dtype: {str(dtype)[6:]} ({why_dtype})"
              + (f", {ranks.size} processes" if ranks.size > 1 else ""))
        settings = ", ".join(f"{k}={getattr(args, k)}" for k in RECIPES[args.preset])
        print(f"model: {args.model}, recipe {args.preset}: {settings}", flush=True)
    if device.type == "cpu" and args.model == "gpt" and os.path.exists("/proc/meminfo"):
        # A CPU process out of memory is killed without a word: refuse a step whose activations
        # alone (a few float32 (B, T, C) per layer, and explicit attention's (B, nh, T, T)) cannot fit.
        with open("/proc/meminfo") as f:
            free = int(dict(line.split(":") for line in f)["MemAvailable"].split()[0]) * 1024
        per_position = args.n_layer * (8 * args.n_embd + args.n_head * args.block_size * (args.attention != "fused"))
        if 4 * args.batch_size * args.block_size * per_position > free:
            fail(f"out of memory: a step needs more than the {free / 2**30:.1f} GiB free; lower --batch-size "
                 f"first, then --block-size or --n-embd")
    torch.manual_seed(args.seed)   # the same first weights on every rank
    return device, dtype, ranks


def pick_device(name):
    """--device -> (torch.device, why): 'auto' takes CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        return torch.device(name), "auto"
    if name == "cuda" and not torch.cuda.is_available() or name == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {name} (or the resumed run's): this machine has no {name}; add --device cpu")
    return torch.device(name), f"--device {name}"


def pick_dtype(name, device):
    """--dtype -> (the number format of the matrix multiplies, why). bfloat16 keeps float32's range
    with fewer digits: plenty for a matrix multiply. float16 has more digits but a far smaller range
    (so the loss scaler); it is the fast format of older GPUs and Apple's. Under autocast the
    weights, layer norms and loss stay float32."""
    if name != "auto":
        return getattr(torch, name), f"--dtype {name}"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, f"compute capability {major}.{minor} multiplies bfloat16 natively"
        return torch.float16, f"compute capability {major}.{minor} has no bfloat16 hardware; with a scaler"
    if device.type == "mps":
        return torch.float16, "Apple GPUs multiply float16 natively; with a loss scaler"
    if CPU_BFLOAT16:
        return torch.bfloat16, "this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX)"
    return torch.float32, "this CPU has no bfloat16 hardware"


def load_data(data_dir, block_size):
    """data/train.bin and val.bin as read-only memory maps -> (train, val, chars), after checking that
    they and vocab.json belong together: a torn or mismatched set is refused in one line."""
    vocab_path = os.path.join(data_dir, "vocab.json")
    if not os.path.exists(vocab_path):
        fail(f"{data_dir}/ is not prepared (no vocab.json); run: python prepare.py")
    try:
        with open(vocab_path, encoding="utf-8") as f:
            info = json.load(f)
        chars, dtype = "".join(info["chars"]), np.dtype(info["dtype"])
        sizes = {"train": info["train_tokens"] * dtype.itemsize, "val": info["val_tokens"] * dtype.itemsize}
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{vocab_path} is damaged ({type(e).__name__}: {e}); run: python prepare.py")
    splits = []
    for name, size in sizes.items():
        path = os.path.join(data_dir, f"{name}.bin")
        torn = f"{data_dir}/ is torn or mismatched ({name}.bin and vocab.json disagree); run: python prepare.py"
        if not os.path.isfile(path) or os.path.getsize(path) != size or len(set(chars)) != info["vocab_size"]:
            fail(torn)
        # A memory map reads only the pages a batch touches: a text larger than memory trains too.
        splits.append(np.memmap(path, dtype=dtype, mode="r"))
        if splits[-1].max() >= len(chars):   # an id with no character (this reads the file once)
            fail(torn)
        if len(splits[-1]) <= block_size:
            fail(f"--block-size {block_size} needs more than {block_size} characters of {name} data; "
                 f"{path} has {len(splits[-1])}: lower it or prepare a longer text")
    return splits[0], splits[1], chars


def model_args(args, chars):   # what a checkpoint records to rebuild the model
    sizes = {k: getattr(args, k) for k in GPT_SIZES} if args.model == "gpt" else {}
    return {"model": args.model, "vocab_size": len(chars), **sizes}


def build_model(model_args, fused_attention=True):
    sizes = {k: v for k, v in model_args.items() if k != "model"}
    if model_args["model"] == "bigram":
        return BigramLanguageModel(**sizes)
    return GPT(GPTConfig(**sizes, fused_attention=fused_attention))


def wrap_for_step(model, args, ranks, iter_num):
    """Say the model's size -> the model as the training step calls it: torch.compile'd (--compile),
    and under torchrun in DistributedDataParallel, which averages the ranks' gradients. Evaluation
    and checkpoints use `model` itself, without a wrapper's key prefixes."""
    if ranks.master:
        print(f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    step_model = torch.compile(model) if args.compile else model
    if ranks.size == 1:
        return step_model
    torch.manual_seed(args.seed + 1000 * ranks.rank + iter_num)   # from here on, each rank its own batches
    return torch.nn.parallel.DistributedDataParallel(step_model)


# -----------------------------------------------------------------------------
# The run's files in --out-dir, each replaced whole or not at all:
#   ckpt.pt   the weights of the best evaluation: what generate.py samples
#   last.pt   the state at the last evaluation or the end: what --resume continues from
#   log.csv   every evaluation's losses

def claim_out_dir(args, saved):
    """Lock --out-dir for this run -> the lock. An earlier run there is only continued (--resume) or
    replaced (--overwrite), never replaced by mistake."""
    try:
        os.makedirs(args.out_dir, exist_ok=True)
        lock = os.open(args.out_dir, os.O_RDONLY)
    except OSError as e:
        fail(f"cannot write to --out-dir {args.out_dir}: {e.strerror}")
    ckpt, last, log = (os.path.join(args.out_dir, name) for name in ("ckpt.pt", "last.pt", "log.csv"))
    try:
        import fcntl   # Linux and macOS; elsewhere runs are not guarded against each other
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # held until closed, or the process ends
    except BlockingIOError:
        fail(f"another train.py is running in {args.out_dir}/; wait for it, or use another --out-dir")
    except ImportError:
        pass
    if saved is None and not args.overwrite and any(map(os.path.exists, (ckpt, last, log))):
        os.close(lock)
        fail(f"{args.out_dir}/ already holds a run; continue it with --resume, start over there with "
             f"--overwrite, or train in another --out-dir")
    for path in [ckpt + ".tmp", last + ".tmp"] + ([ckpt, last] if saved is None else []):
        if os.path.exists(path):   # left by a killed save; with --overwrite, the earlier run
            os.remove(path)
    # A resumed log keeps its rows up to last.pt's step: a run killed after its last save logged
    # evaluations that last.pt does not hold.
    rows = [row for row in read_log(log) if row[0] <= saved["iter_num"]] if saved else []
    with open(log + ".tmp", "w", newline="") as f:
        csv.writer(f).writerows([LOG_HEADER] + [[i, f"{t:.4f}", f"{v:.4f}", f"{s:.2f}"] for i, t, v, s in rows])
    os.replace(log + ".tmp", log)
    return lock


def write_whole(path, data):
    """Write bytes to path.tmp, then rename it over path: a crash leaves the old file or the new."""
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    finally:
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")


def save_run(args, model, optimizers, scaler, chars, iter_num, best_val_loss, best_iter, seconds,
             losses=None, improved=False):
    """A row in log.csv, the state in last.pt and, if val improved, the weights in ckpt.pt. last.pt
    first: killed between the two, a resume knows the new best and never puts worse weights in
    ckpt.pt. A full disk ends the run in one line; the files stay whole."""
    checkpoint = {"model": model.state_dict(), "model_args": model_args(args, chars), "vocab": chars,
                  "iter_num": iter_num, "best_val_loss": best_val_loss, "config": vars(args)}
    state = {"optimizers": [o.state_dict() for o in optimizers], "scaler": scaler.state_dict(),
             "best_iter": best_iter, "elapsed_s": seconds, "rng_state": torch.get_rng_state(),
             "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    try:
        if losses is not None:
            with open(os.path.join(args.out_dir, "log.csv"), "a", newline="") as f:
                csv.writer(f).writerow([iter_num, f"{losses['train']:.4f}", f"{losses['val']:.4f}", f"{seconds:.2f}"])
        for name, contents in [("last.pt", {**checkpoint, **state})] + ([("ckpt.pt", checkpoint)] if improved else []):
            serialised = io.BytesIO()   # in memory first: torch.save to a file hides a full disk's cause
            torch.save(contents, serialised)
            write_whole(os.path.join(args.out_dir, name), serialised.getbuffer())
    except OSError as e:
        kept = "the last whole checkpoints are" if os.path.exists(os.path.join(args.out_dir, "last.pt")) else "nothing is"
        fail(f"cannot write to {args.out_dir}/ ({e.strerror}); {kept} in it")


def read_run(path):
    """last.pt -> the saved run. weights_only=True reads tensors and plain values only: a file from
    elsewhere cannot run code when it is loaded."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail(f"nothing to resume: no {path}; train afresh with: python train.py")
    except pickle.UnpicklingError as e:   # weights_only refused a Python object (GLOBAL), or no pickle
        fail(f"refusing to load {path}: it holds Python objects that could run code, not just weights"
             if "GLOBAL" in str(e) else f"{path} is not a PyTorch checkpoint")
    except (RuntimeError, EOFError, IsADirectoryError) as e:
        fail(f"{path} is not a readable checkpoint ({str(e).splitlines()[0][:100]})")
    keys = ("model", "model_args", "vocab", "iter_num", "best_val_loss", "best_iter", "config", "optimizers",
            "scaler", "rng_state", "cuda_rng_state", "elapsed_s")
    missing = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        fail(f"{path} is not a resumable checkpoint of train.py (it has no {', '.join(missing)})")
    return checkpoint


def resume(saved, model, optimizers, scaler, chars, args, device):
    """Load the saved run into the fresh model, optimisers and scaler -> (step, best val, its step, seconds)."""
    last = os.path.join(args.out_dir, "last.pt")
    if saved["vocab"] != chars:
        fail(f"{last} was trained on another text than {args.data_dir}/ (its vocabulary differs); "
             f"prepare that text again, or train afresh in another --out-dir")
    if saved["model_args"] != model_args(args, chars) or len(saved["optimizers"]) != len(optimizers):
        fail(f"{last} holds another model or optimiser ({saved['model_args']}, --optimizer "
             f"{saved['config']['optimizer']}); resume without size flags, or train afresh in another --out-dir")
    model.load_state_dict(saved["model"])
    for optimizer, state in zip(optimizers, saved["optimizers"]):
        optimizer.load_state_dict(state)
    scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng_state"])
    if device.type == "cuda" and saved["cuda_rng_state"] is not None:
        torch.cuda.set_rng_state(saved["cuda_rng_state"])
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"resuming from {last} at step {saved['iter_num']} (best val loss {saved['best_val_loss']:.4f})")
    return saved["iter_num"], saved["best_val_loss"], saved["best_iter"], saved["elapsed_s"]


def finish(args, model, optimizers, scaler, chars, iter_num, best_val_loss, best_iter, seconds, signal_number,
           ranks, lock):
    """Save the state the run ended in (also after a signal), unlock --out-dir, say what is where."""
    if ranks.size > 1:
        torch.distributed.barrier()   # no rank leaves while rank 0 still evaluates
        torch.distributed.destroy_process_group()
        if not ranks.master:
            return
    save_run(args, model, optimizers, scaler, chars, iter_num, best_val_loss, best_iter, seconds)
    os.close(lock)
    out = args.out_dir
    best = f"best val loss {best_val_loss:.4f} at step {best_iter}: {out}/ckpt.pt, the weights generate.py samples"
    if signal_number:
        resume_command = "python train.py --resume" + (f" --out-dir {out}" if out != "out" else "")
        print(f"interrupted at step {iter_num} ({signal.Signals(signal_number).name}); saved {out}/last.pt; "
              f"continue with: {resume_command}\n{best}")
        raise SystemExit(128 + signal_number)   # the status a shell gives a command a signal stopped
    print(plot_log(os.path.join(out, "log.csv")))
    print(f"{best}\nlast step {iter_num}: {out}/last.pt, the state --resume continues from; {seconds:.1f} s")


# -----------------------------------------------------------------------------
# Ctrl-C and SIGTERM; several processes (torchrun); the time budget; the progress bar

@contextlib.contextmanager
def stop_on_signals():
    """While inside, Ctrl-C (SIGINT) or SIGTERM (from `kill`, `timeout` or a job scheduler) sets
    .signal: the loop stops after its step and saves. A second one stops at once, unsaved."""
    stop = argparse.Namespace(signal=0)

    def request_stop(signum, frame):
        if stop.signal:
            raise KeyboardInterrupt
        stop.signal = signum
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def join_torchrun(device):
    """Started by `torchrun --nproc_per_node N train.py`? Then this is one of N processes ("ranks"),
    each with its own batches; rank 0 alone evaluates and writes. -> ranks (size, rank, local, master)"""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if os.environ.get("WORLD_SIZE", "1") == "1":
        return argparse.Namespace(size=1, rank=0, local=0, master=True)
    if not all(os.environ.get(n) for n in names) or not all(os.environ[n].isdigit() for n in names[:3]):
        fail(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set, but not all of {', '.join(names[1:])} (whole "
             f"numbers, an address, a port): start the processes with torchrun, or unset WORLD_SIZE")
    size, rank, local = (int(os.environ[n]) for n in names[:3])
    if rank == 0:   # never a silent wait: a leftover WORLD_SIZE would otherwise hang here
        print(f"waiting for all {size} processes at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} "
              f"(WORLD_SIZE is set; unset it to train alone)", flush=True)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return argparse.Namespace(size=size, rank=rank, local=local, master=rank == 0)


def agree(signal_number, ranks):
    """Under torchrun each rank may see a signal at another step: all stop when any one has seen it."""
    if ranks.size == 1:
        return signal_number
    flag = torch.tensor([signal_number])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item())


def time_used(start, time_budget, ranks):
    """The share of the time budget used. Under torchrun rank 0's clock counts for every rank: all
    must stop at the same step, with the same learning rate."""
    share = torch.tensor([(time.monotonic() - start) / (60 * time_budget)], dtype=torch.float64)
    if ranks.size > 1:
        torch.distributed.broadcast(share, src=0)
    return share.item()


def progress_bar(args, iter_num, ranks):
    """A live bar in a terminal (none when the output goes to a file); with a time budget it counts steps."""
    return tqdm(total=None if args.time_budget else args.max_iters, initial=iter_num, desc="training",
                unit="it", dynamic_ncols=True, disable=None if ranks.master else True)


# -----------------------------------------------------------------------------
# The loss curves of log.csv, drawn in the terminal

LOG_HEADER = ["iter", "train_loss", "val_loss", "elapsed_s"]


def read_log(log_path):
    """log.csv -> [(iter, train_loss, val_loss, elapsed_s), ...], skipping rows cut short by a kill."""
    rows = []
    if os.path.exists(log_path):
        with open(log_path, newline="") as f:
            for line in csv.reader(f):
                with contextlib.suppress(ValueError, IndexError):
                    rows.append((int(line[0]), float(line[1]), float(line[2]), float(line[3])))
    return rows


def plot_log(log_path, width=64, height=16):
    """log.csv -> a text picture of the train (.) and val (o) loss against the step. Where val
    rises above train, the model memorises its training text instead of learning: overfitting."""
    rows = [row[:3] for row in read_log(log_path) if all(map(math.isfinite, row))]
    if len(rows) < 2:
        return f"{log_path}: fewer than two evaluations, nothing to draw yet"
    best = min(r[2] for r in rows)
    rows = rows[1:] if len(rows) >= 3 else rows   # the first loss, ~ln(vocab_size), would squash the rest
    steps = [r[0] for r in rows]
    low, high = min(min(r[1:]) for r in rows), max(max(r[1:]) for r in rows)
    grid = [[" "] * width for _ in range(height)]
    for col in range(width):
        step = steps[0] + (steps[-1] - steps[0]) * col / (width - 1)
        for series, mark in ((1, "."), (2, "o")):
            loss = np.interp(step, steps, [r[series] for r in rows])   # a straight line between evaluations
            cell = grid[round((high - loss) / max(high - low, 1e-9) * (height - 1))]
            cell[col] = "#" if cell[col] not in (" ", mark) else mark
    lines = [(f"{high - (high - low) * i / (height - 1):6.3f}" if i % 3 == 0 else " " * 6) + " |" + "".join(cells)
             for i, cells in enumerate(grid)]
    lines += ["       +" + "-" * width,
              f"        step {steps[0]}" + f"step {steps[-1]}".rjust(width - 5 - len(str(steps[0]))),
              f"        . train loss   o val loss   # both    (best val {best:.4f})"]
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# The command line

def number(kind, zero_allowed=False, below=None):
    """An argparse type: a finite number of this kind, > 0 (>= 0 with zero_allowed), below `below`."""
    below = below or (2**31 if kind is int else math.inf)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not (0 <= value < below and math.isfinite(value)) or value == 0 and not zero_allowed:
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_allowed else 'above 0'} and below "
                                             f"{below:g}, got {text}")
        return value
    return parse


def parse_args(argv=None):
    """Flags -> (args with every setting filled in, the saved run when --resume is given)."""
    parser = argparse.ArgumentParser(description="Train a character-level language model on the text that "
                                     "prepare.py prepared; writes ckpt.pt, last.pt and log.csv to --out-dir.")
    parser.error = lambda message: fail(f"{message} (see --help)")
    add = parser.add_argument
    add("--model", choices=["gpt", "bigram"], help="which model to train (default: gpt, or the resumed run's)")
    add("--preset", choices=["lecture", "cpu"], help="the GPT's recipe: the lecture's model, or one for ~10 "
                                                     "minutes on 2 CPU cores (default: lecture on CUDA, else cpu)")
    hp = parser.add_argument_group("settings (default: the recipe's, or the resumed run's)").add_argument
    hp("--batch-size", type=number(int), help="independent sequences per step (B)")
    hp("--block-size", type=number(int), help="context length in characters (T)")
    hp("--n-layer", type=number(int), help="Transformer blocks")
    hp("--n-head", type=number(int), help="attention heads per block (must divide --n-embd)")
    hp("--n-embd", type=number(int), help="channels per position (C)")
    hp("--dropout", type=number(float, zero_allowed=True, below=1), help="dropout probability")
    hp("--max-iters", type=number(int), help="training steps (instead of the recipe's time budget)")
    hp("--time-budget", type=number(float), metavar="MINUTES", help="train this many minutes (resumes count) "
       "instead of --max-iters steps; the schedule, drawn for --max-iters steps, follows the time used")
    hp("--eval-interval", type=number(int), help="evaluate, log and save every this many steps")
    hp("--eval-iters", type=number(int), help="batches averaged per split in each evaluation")
    hp("--learning-rate", type=number(float), help="peak learning rate")
    hp("--min-lr", type=number(float, zero_allowed=True), help="learning rate at the end of the decay")
    hp("--warmup-iters", type=number(int, zero_allowed=True), help="steps of linear warmup")
    hp("--weight-decay", type=number(float, zero_allowed=True), help="weight decay on matrices")
    hp("--grad-clip", type=number(float, zero_allowed=True), help="clip the gradient's norm to this (0: off)")
    hp("--optimizer", choices=["adamw", "muon"], help="muon: Muon for the blocks' matrices, AdamW for the rest")
    hp("--attention", choices=["fused", "explicit"], help="one fused PyTorch call, or the explicit math")
    add("--device", choices=["auto", "cpu", "cuda", "mps"], help="where to train (default: auto)")
    add("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="number format of the matrix "
        "multiplies (default: auto: bfloat16 where the hardware has it, float16 on older GPUs, else float32)")
    add("--compile", action="store_true", default=None, help="torch.compile the model (slow to start; for GPUs)")
    add("--seed", type=number(int, zero_allowed=True, below=2**63), help="random seed (default: 1337)")
    add("--data-dir", help="where prepare.py wrote its files (default: data)")
    add("--out-dir", default="out", help="where ckpt.pt, last.pt and log.csv go (default: out)")
    add("--resume", action="store_true", help="continue the run in --out-dir/last.pt; flags given override it")
    add("--overwrite", action="store_true", help="start afresh in an --out-dir that holds a run, replacing it")
    args = parser.parse_args(argv)
    given = {name for name, value in vars(args).items() if value is not None}
    saved = read_run(os.path.join(args.out_dir, "last.pt")) if args.resume else None
    kept = {name for name in (saved["config"] if saved else {}) if name not in given}   # a resumed run's
    for name in kept:
        setattr(args, name, saved["config"][name])
    if saved and args.model != saved["config"]["model"]:
        fail(f"{args.out_dir}/last.pt holds a {saved['config']['model']} run; resume without --model, or train "
             f"afresh in another --out-dir")
    gpt_only = sorted(given & {"preset", "optimizer", "attention", *GPT_SIZES[1:]})
    if args.model == "bigram" and gpt_only:
        fail(f"--{gpt_only[0].replace('_', '-')} is a GPT setting; the bigram has no such setting")
    if {"max_iters", "time_budget"} <= given:
        fail("--max-iters and --time-budget both given; a run ends by one of them: give one")
    args.model = args.model or "gpt"
    if args.preset is None or "bigram" in (args.model, args.preset):   # none given, or another model
        gpu = (args.device or "auto") in ("auto", "cuda") and torch.cuda.is_available()
        args.preset = "bigram" if args.model == "bigram" else "lecture" if gpu else "cpu"
    defaults = dict(device="auto", dtype="auto", compile=False, seed=1337, data_dir="data", attention="fused")
    for name, value in {**defaults, **RECIPES[args.preset]}.items():
        if getattr(args, name, None) is None and name not in kept:
            setattr(args, name, value)
    if "max_iters" in given:   # a fixed number of steps: the same run on every machine
        args.time_budget = None
    if args.model == "gpt" and args.n_embd % args.n_head:
        fail(f"--n-embd {args.n_embd} must be a multiple of --n-head {args.n_head}")
    return args, saved


def main(argv=None):
    args, saved = parse_args(argv)
    try:
        train(args, saved)
    except (torch.OutOfMemoryError, MemoryError):
        fail("out of memory: lower --batch-size first, then --block-size or --n-embd")
    except KeyboardInterrupt:   # a second Ctrl-C: stop at once
        sys.exit(f"train.py: interrupted; {args.out_dir}/ holds the last checkpoints saved whole")


if __name__ == "__main__":
    main()
