"""
Step 3 of the lesson: train a model on the prepared text and watch the loss fall.

    python prepare.py                   # once: builds data/train.bin, val.bin, vocab.json
    python train.py                     # the GPT, with the recipe that suits this machine
    python train.py --model bigram      # the bigram baseline (seconds)
    python train.py --preset lecture    # the lecture's GPT, 10,788,929 parameters (wants a GPU)
    python train.py --resume            # continue the run saved in out/last.pt
    python generate.py                  # samples from out/ckpt.pt, the best weights of the run

The loop is the lecture's: draw a random batch of text chunks, predict every next character,
measure the cross-entropy loss, backpropagate, take an optimiser step; every eval_interval steps
estimate the train and validation loss, log them, and keep the weights that scored best on
validation. On top of the lecture: a learning-rate warmup and cosine decay, gradient clipping,
weight decay on matrices only, bfloat16 (or float16 with a loss scaler) where the hardware is fast
at it, runs that end on a time budget, runs that resume, and the Muon optimiser. The CPU recipe
trains the blocks' weight matrices with Muon, which learns more per step, so a CPU's few minutes
go further; AdamW, the lecture's optimiser, trains the rest, and all of the lecture preset.

Read from here to the divider "The lesson ends here": the recipes, batches, the loss estimate,
the optimiser and its schedule, and the training loop. Below it is the machinery the loop leans
on (devices, number formats, checkpoints, Ctrl-C, the loss plot, the command line).
"""

import argparse
import contextlib
import csv
import ctypes
import io
import json
import math
import os
import pickle
import signal
import sys
import time
import warnings

if __name__ == "__main__":  # Ctrl-C while the libraries below load: one line, not a traceback
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit("train.py: interrupted while starting; nothing changed"))

import numpy as np
import torch
from tqdm import tqdm

from bigram import BigramLanguageModel
from gpt import GPT, GPTConfig
from prepare import UserError

# Recipes: plain dicts of hyperparameters, and the one place where the models' sizes are set.
# `python train.py` trains the GPT with "lecture" on CUDA and "cpu" elsewhere (Apple's MPS too); any flag
# given on the command line overrides the recipe.
PRESETS = {
    # The lecture's bigram.py: a constant learning rate is all a lookup table needs.
    "bigram": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=200,
                   learning_rate=1e-2, min_lr=1e-2, warmup_iters=0, weight_decay=0.0, grad_clip=0.0,
                   optimizer="adamw", time_budget=None),
    # The lecture's model and batch (B 64, T 256, 6 layers, 6 heads, 384 channels, dropout 0.2,
    # 5000 steps). The lecture trains it with AdamW at a constant 3e-4; here with nanoGPT's settings
    # for it: a peak of 1e-3 after a short warmup, cosine decay to 1e-4, weight decay 0.1 on the
    # matrices, beta2 0.99, gradients clipped at 1 (see configure_optimizer and get_lr).
    "lecture": dict(batch_size=64, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2,
                    max_iters=5000, eval_interval=500, eval_iters=200, learning_rate=1e-3,
                    min_lr=1e-4, warmup_iters=100, weight_decay=0.1, grad_clip=1.0,
                    optimizer="adamw", time_budget=None),
    # Tuned by full runs for the lowest validation loss in 10 minutes on 2 CPU cores with
    # AVX512-BF16 (README, "What to expect"): in that time wider, deeper or longer-context models
    # took too few steps; Muon learns more per step than AdamW and then overfits, which dropout 0.1
    # holds back (0.2 held back learning too). It trains for 9.5 minutes, whatever the machine
    # does per step; max_iters is then only the length the schedule is drawn for (--max-iters N
    # instead: N steps, the same run on every machine that computes in the same number format).
    # On a CPU 2.5x slower per step, with under 1,000 steps in the budget, 3 layers did better.
    "cpu": dict(batch_size=48, block_size=128, n_layer=4, n_head=4, n_embd=256, dropout=0.1,
                max_iters=1100, eval_interval=200, eval_iters=20, learning_rate=2e-3,
                min_lr=2e-4, warmup_iters=100, weight_decay=0.1, grad_clip=1.0,
                optimizer="muon", time_budget=9.5),
}
GPT_SIZES = ("block_size", "n_layer", "n_head", "n_embd", "dropout")


# -----------------------------------------------------------------------------
# Data: random batches cut from the prepared text

def get_batch(data, batch_size, block_size, device, generator=None):
    """batch_size random chunks of data -> inputs x (B, T) and targets y (B, T), y = x shifted by one.

    The target at position t is the character at t + 1: one chunk of block_size + 1 characters
    holds block_size training examples at once, with contexts of length 1, 2, ..., block_size.
    """
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,) chunk starts
    offsets = ix.numpy()[:, None] + np.arange(block_size + 1)                     # (B, T + 1)
    chunk = torch.from_numpy(data[offsets].astype(np.int64))                      # (B, T + 1)
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()                  # (B, T), (B, T)
    if device.type == "cuda":  # pinned memory lets the copy to the GPU overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, device, autocast=contextlib.nullcontext):
    """Mean loss over eval_iters random batches of each split -> {"train": float, "val": float}.

    One batch's loss is noisy; the average over many is a steady number to compare across time.
    The batches come from their own generator, seeded the same at every evaluation: each
    evaluation scores the same text, so a change in the loss is the model's, not the sampling's,
    and training's random numbers are left exactly as they were.
    model.eval() turns dropout off, so we measure the model we would actually sample from.
    """
    model.eval()
    out = {}
    for name, data in splits.items():
        generator = torch.Generator().manual_seed(1234)
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size, block_size, device, generator)
            with autocast():
                _, loss = model(x, y)
            losses[k] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


# -----------------------------------------------------------------------------
# Optimisation: AdamW (or Muon), the learning-rate schedule

def configure_optimizer(model, learning_rate, weight_decay, optimizer="adamw", muon_lr_scale=2.0):
    """AdamW (the lecture's optimiser) -> a torch optimiser; or with optimizer="muon", Muon and AdamW
    as one (configure_muon, below the divider).

    Weight decay pulls weights towards zero, a pressure to use small, spread-out weights. Biases
    and layer-norm gains are single numbers per channel whose size is their whole job: leave them.
    beta2 = 0.99 instead of 0.999: in a few thousand steps the second-moment estimate should
    forget its noisy start sooner. Each parameter group's "lr_scale" multiplies the scheduled
    learning rate (the training loop sets every group's lr): 1 here; with Muon, its matrices take
    muon_lr_scale (default 2, --muon-lr-scale).
    """
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    if optimizer == "adamw":
        groups = [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
                  {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.99))
    # --optimizer muon: Muon for the weight matrices inside the blocks, AdamW for the rest; what
    # Muon does and why it learns more per step is told where it is built, below the divider.
    return configure_muon(model, learning_rate, weight_decay, muon_lr_scale, decay, no_decay)


def get_lr(iter_num, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """Linear warmup for warmup_iters steps, then cosine decay to min_lr at lr_decay_iters.

    Warmup: AdamW's first steps are taken with poor estimates of the gradient's scale, so they
    start small. Decay: late in training, smaller steps settle into a minimum instead of
    bouncing around it; the last few hundred steps of a cosine are worth a lot of loss.
    """
    if iter_num < warmup_iters:
        return learning_rate * (iter_num + 1) / warmup_iters
    if iter_num >= lr_decay_iters:
        return min_lr
    progress = (iter_num - warmup_iters) / max(1, lr_decay_iters - warmup_iters)   # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


# -----------------------------------------------------------------------------
# The training loop

def train(args):
    """Train as args say (settings left as None come from the recipe) -> the best validation loss.
    The settings, device, number format, data and the run's files live in class Run, below."""
    run = Run(args)
    model = build_model(run.model_args, run.fused_attention).to(run.device)
    optimizer = configure_optimizer(model, args.learning_rate, args.weight_decay, args.optimizer, args.muon_lr_scale)
    # A fresh run starts at step 0; with --resume, the saved weights, optimiser and step come back.
    iter_num, best_val_loss = run.start(model, optimizer)
    if run.nothing_to_do(iter_num):   # --resume of a run that has already reached its end
        return best_val_loss
    # The step calls `model` itself, or the wrapper torch.compile (--compile) or torchrun's
    # DistributedDataParallel puts around it; evaluation and checkpoints use `model`.
    wrapped = run.wrap(model)
    with stop_when_signalled() as stop, run.progress_bar(iter_num) as progress:
        while True:
            # The end: after max_iters steps (the lecture's `for iter in range(max_iters)`) or,
            # with --time-budget, when time is up. Every eval_interval steps and at the end, measure
            # both splits, log them, and keep the best validation loss's weights in ckpt.pt.
            last_step = run.finished(iter_num)
            if (iter_num % args.eval_interval == 0 or last_step) and run.evaluates(iter_num):  # rank 0
                losses = estimate_loss(model, run.splits, args.eval_iters, args.batch_size, args.block_size,
                                       run.device, run.autocast)
                progress.write(f"step {iter_num}: train loss {losses['train']:.4f}, "
                               f"val loss {losses['val']:.4f} ({run.elapsed():.1f} s)")
                improved = losses["val"] < best_val_loss
                best_val_loss = min(best_val_loss, losses["val"])
                run.record(iter_num, losses, best_val_loss, improved)   # log.csv; ckpt.pt if improved; last.pt
            if last_step or run.agree(stop.requested):   # Ctrl-C (under torchrun, all ranks stop together)
                break

            # One step of gradient descent on one random batch. The learning rate follows the
            # schedule by step or, with --time-budget, by the share of the time used.
            lr = get_lr(run.schedule_step(iter_num), args.learning_rate, args.min_lr, args.warmup_iters,
                        args.lr_decay_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]   # lr_scale: 1, or more for Muon's matrices
            x, y = get_batch(run.train_data, args.batch_size, args.block_size, run.device)
            with run.autocast():
                logits, loss = wrapped(x, y)
            optimizer.zero_grad(set_to_none=True)
            # In float32 and bfloat16 the scaler passes each call through: the lecture's backward()
            # and step(). In float16, where tiny gradients round to zero, backward runs on the loss
            # times a large scale, and the gradients are divided by it before the step (Run.scaler).
            run.scaler.scale(loss).backward()              # loss.backward()
            if args.grad_clip > 0:
                # Cap the gradient's length, so one unlucky batch cannot throw the weights far
                # (its true length: the scaler's factor is divided out first).
                run.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            run.scaler.step(optimizer)       # optimizer.step(); in float16 skipped if the gradients overflowed
            run.scaler.update()              # float16: after an overflow, a lower scale for the next step
            loss_value = loss.item()
            run.check_loss(loss_value, iter_num)   # a loss that became (and stays) inf or NaN stops the run
            iter_num += 1
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}", refresh=False)
            progress.update()
    run.finish(iter_num, best_val_loss, interrupted=stop.requested)
    return best_val_loss


# =================================================================================================
# The lesson ends here: the recipes, the batches, the loss estimate, the optimiser, its schedule
# and the loop are all above (the model itself is in gpt.py). Below is the machinery the loop
# leans on: reading the prepared files, choosing a device, a number format and an attention path,
# setting up (and resuming) a run, checkpoints, Ctrl-C, the loss plot and the command line.
# =================================================================================================

def load_splits(data_dir):
    """Open data/train.bin and val.bin as read-only memory maps -> (train, val, chars), after checking
    that they and vocab.json belong together (a hand-edited or foreign vocab.json, a torn set)."""
    vocab_path = os.path.join(data_dir, "vocab.json")
    if not os.path.exists(vocab_path):
        raise UserError(f"{data_dir}/ is not prepared (no vocab.json); run: python prepare.py")
    damaged = f"{data_dir}/ is incomplete or damaged ({{}}); run: python prepare.py"
    try:
        with open(vocab_path, encoding="utf-8") as f:
            info = json.load(f)
        chars = "".join(info["chars"])
        if not (isinstance(info["chars"], list) and all(isinstance(c, str) and len(c) == 1 for c in info["chars"])
                and len(set(chars)) == len(chars) == info["vocab_size"]):
            raise UserError(damaged.format("vocab.json's characters are not vocab_size distinct characters"))
        if info["dtype"] not in ("uint8", "uint16"):
            raise UserError(damaged.format(f"vocab.json names dtype {info['dtype']!r}, not uint8 or uint16"))
        dtype = np.dtype(info["dtype"])
        splits = []
        for name in ("train", "val"):
            path = os.path.join(data_dir, f"{name}.bin")
            expected = info[f"{name}_tokens"] * dtype.itemsize
            if not os.path.isfile(path) or os.path.getsize(path) != expected:
                size = os.path.getsize(path) if os.path.isfile(path) else "no"
                raise UserError(damaged.format(f"{name}.bin has {size} bytes, vocab.json says {expected}"))
            # A memory map reads only the pages a batch touches; the check of the ids below reads
            # the file once (about a second per GB).
            data = np.memmap(path, dtype=dtype, mode="r")
            if int(data.max()) >= len(chars):  # an id with no character: the embedding would fail
                raise UserError(damaged.format(f"{name}.bin holds ids beyond vocab.json's {len(chars)} characters"))
            splits.append(data)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(damaged.format(first_sentence(e)))
    return splits[0], splits[1], chars


def build_model(model_args, fused_attention=True):
    """A fresh model from a plain dict such as {"model": "bigram", "vocab_size": 65}.

    fused_attention picks how the GPT computes attention: the same logits in eval mode. In training
    the random dropout masks differ, and on a CPU the fused path skips dropout on the attention
    weights (see gpt.py).
    """
    kind = model_args.get("model")
    sizes = {k: v for k, v in model_args.items() if k != "model"}
    if kind == "bigram":
        return BigramLanguageModel(**sizes)
    if kind == "gpt":
        return GPT(GPTConfig(**sizes, fused_attention=fused_attention))
    raise ValueError(f"unknown model kind {kind!r}")


def pick_device(name):
    """'auto' -> the fastest device present (CUDA, then Apple's MPS, then CPU); else the one named."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda (from --device, or a resumed run's settings): PyTorch sees no CUDA GPU; "
                        "add --device cpu")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps (from --device, or a resumed run's settings): this machine has no MPS; "
                        "add --device cpu")
    return torch.device(name)


def pick_dtype(name, device):
    """--dtype -> (torch dtype, reason): the number format of the matrix multiplies.

    bfloat16 keeps float32's range with fewer digits: plenty for a matrix multiply, and half the
    memory traffic. Under autocast the matrix multiplies (the Linear layers and attention's two
    products) run in it; the weights, the residual stream, the layer norms (which read that
    float32 stream) and the loss stay float32. What takes a multiply's output directly runs in
    bfloat16 on a CPU: the attention softmax and the ReLU (checked with torch 2.13; CUDA's
    autocast computes the softmax in float32).
    float16 has more digits than bfloat16 but a far smaller range: gradients below about 6e-8
    round to zero, so it trains only with a loss scaler (Run.scaler). It is the fast format of
    GPUs made before bfloat16 hardware (NVIDIA compute capability below 8.0, e.g. a T4 or V100)
    and of Apple's GPUs.
    'auto': on CUDA, bfloat16 from compute capability 8.0 (Ampere) on, else float16; on Apple's
    MPS, float16; on a CPU, bfloat16 where it has AVX512-BF16 or AMX, else float32.
    """
    if name == "auto":
        dtype, why = auto_dtype(device)
    else:
        dtype, why = getattr(torch, name), f"--dtype {name}"
        if name == "bfloat16" and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
            major, minor = torch.cuda.get_device_capability(device)
            raise UserError(f"--dtype bfloat16: this GPU (compute capability {major}.{minor}) has no bfloat16 "
                            f"hardware, only a slow emulation; use --dtype float16 or float32")
    if dtype != torch.float32 and not autocast_works(device, dtype):
        if name == "auto":
            return torch.float32, f"auto: PyTorch {torch.__version__} cannot compute in {str(dtype)[6:]} on {device.type}"
        raise UserError(f"--dtype {name}: PyTorch {torch.__version__} cannot compute in {name} on "
                        f"{device.type}; use --dtype float32")
    return dtype, why


def auto_dtype(device):
    """The fastest number format this device multiplies natively -> (dtype, reason)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, f"auto: compute capability {major}.{minor} multiplies bfloat16 natively"
        return torch.float16, (f"auto: compute capability {major}.{minor} has no bfloat16 hardware (8.0 and "
                               f"later have); float16 with a loss scaler")
    if device.type == "mps":
        return torch.float16, "auto: Apple GPUs multiply float16 natively; float16 with a loss scaler"
    if device.type == "cpu":
        # AVX512-BF16 (recent AMD and Intel) and AMX (Intel Sapphire Rapids and later) multiply
        # bfloat16 in hardware; elsewhere bfloat16 is emulated and slower than float32.
        for feature, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported")):
            if getattr(torch.cpu, probe, lambda: False)():
                return torch.bfloat16, f"auto: this CPU has {feature}"
        return torch.float32, "auto: this CPU has no native bfloat16"
    return torch.float32, f"auto: {device.type}"


def autocast_works(device, dtype):
    """Whether this PyTorch can autocast to dtype on device (and, for float16, scale the loss there):
    tried on one small layer. Where it cannot, autocast would only warn and stay in float32."""
    try:
        layer = torch.nn.Linear(4, 4).to(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device.type, dtype=dtype):
                out = layer(torch.ones(1, 4, device=device))
            if dtype == torch.float16:
                torch.amp.GradScaler(device.type)
        return out.dtype == dtype
    except (RuntimeError, ValueError, AssertionError, TypeError):
        return False


def pick_attention(name, device):
    """'auto' -> (fused: bool, reason). Both compute the same attention; which one is faster depends.

    On a GPU: the fused kernel (flash attention). On a CPU the explicit matrix multiplies were
    faster for the CPU recipe, 317 vs 380 ms per step, and as fast at the lecture's sizes with
    dropout: 41.4 vs 42.2 s for 8 steps as whole processes, 4.47 vs 4.41 s per step, medians of
    3 rounds of tests/benchmark.py speed. That while doing more work: dropout on the attention
    weights too, which the fused path skips on a CPU (see gpt.py).
    """
    if name != "auto":
        return name == "fused", f"--attention {name}"
    if device.type != "cpu":
        return True, "auto: the fused kernel off the CPU"
    return False, "auto: on a CPU, explicit is faster"


def refuse_what_cannot_fit(bytes_needed, device, advice):
    """A one-line UserError, before anything starts, when bytes_needed (a lower bound) exceeds the
    memory free on device: a CPU process that overruns its memory is killed by the system, with
    no chance to say why."""
    free = None
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    elif device.type == "cpu" and os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    if free is not None and bytes_needed > free:
        raise UserError(f"out of memory: this needs at least {bytes_needed / 2**30:,.1f} GiB, and {device.type} "
                        f"has {free / 2**30:,.1f} GiB free; {advice}")


def keep_freed_memory_on_linux():
    """Ask glibc's malloc to keep freed blocks instead of returning them to the system (Linux only).

    Every training step allocates and frees the same large activation buffers. By default glibc
    maps blocks over 32 MB fresh from the kernel and unmaps them on free, so every step pays
    again for the kernel to zero that memory: a fresh 50 MB tensor costs ~30 ms before PyTorch
    writes a byte. Keeping freed memory in the heap makes the next step reuse it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, Windows, musl): nothing to tune
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)                 # never serve a block by mmap: reuse the heap
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)   # never shrink the heap after a free


# -----------------------------------------------------------------------------
# One run: its set-up, its files, its end

PATIENT_STEPS = 20  # float16: steps in a row with an inf or NaN loss before the run counts as diverged
clock = time.monotonic  # the run's stopwatch, in seconds

class Run:
    """Everything train() needs that is not the lesson: the settings (the recipe, flags, or with
    --resume the saved run's), the device and number format, the data, the processes started by
    torchrun, and the run's three files in --out-dir:

        ckpt.pt   the weights of the best evaluation so far: what generate.py samples
        last.pt   the state at the last evaluation or the end (weights, optimiser, step, random
                  state, settings): what --resume continues from
        log.csv   every evaluation's train and val loss
    """

    def __init__(self, args):
        self.args = args
        self.ckpt_path = os.path.join(args.out_dir, "ckpt.pt")
        self.last_path = os.path.join(args.out_dir, "last.pt")
        self.log_path = os.path.join(args.out_dir, "log.csv")
        saved = read_checkpoint(self.last_path, torch.device("cpu"), for_resume=True) if args.resume else None
        fill_in_hyperparameters(args, saved)
        device = pick_device(args.device)

        # Started by torchrun (`torchrun --nproc_per_node N train.py`)? Then this is one of N processes
        # ("ranks"), each with its own batches; DistributedDataParallel averages their gradients, so
        # all ranks keep identical weights. Rank 0 alone evaluates, logs and writes checkpoints.
        self.world_size, rank, local_rank = torchrun_environment()
        if self.world_size > 1:
            if device.type == "cuda":
                device = torch.device("cuda", local_rank)
                torch.cuda.set_device(device)
            if rank == 0:  # never a silent wait: a leftover WORLD_SIZE would otherwise hang here
                print(f"waiting for all {self.world_size} processes at {os.environ['MASTER_ADDR']}:"
                      f"{os.environ['MASTER_PORT']} (WORLD_SIZE is set; unset it to train alone)", flush=True)
            torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        self.device, self.master = device, rank == 0
        self.say = print if self.master else (lambda *a, **k: None)

        dtype, why = pick_dtype(args.dtype, device)
        self.say(f"device: {device}" + (" (auto)" if args.device == "auto" else "") + f", dtype: {str(dtype)[6:]} "
                 f"({why})" + (f", {self.world_size} processes" if self.world_size > 1 else ""))
        self.fused_attention = True
        if args.model == "gpt":
            settings = {k: getattr(args, k) for k in PRESETS[args.preset]}
            if args.time_budget is not None:  # the budget ends the run; max_iters only shapes the schedule
                settings["max_iters"] = f"{args.max_iters} (the schedule's length; the time budget ends the run)"
            self.say(f"recipe: {args.preset}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
            self.fused_attention, why = pick_attention(args.attention, device)
            self.say(f"attention: {'fused' if self.fused_attention else 'explicit'} ({why})")
        self.rank = rank
        self.saved = saved
        torch.manual_seed(args.seed)  # the same initial weights on every rank
        if device.type == "cpu":
            keep_freed_memory_on_linux()

        self.train_data, val_data, self.chars = load_splits(args.data_dir)
        self.splits = {"train": self.train_data, "val": val_data}
        for name, data in self.splits.items():
            if len(data) <= args.block_size:
                raise UserError(f"--block-size {args.block_size} needs more than {args.block_size} "
                                f"characters of {name} data, but {args.data_dir}/{name}.bin has {len(data)}")

        self.model_args = {"model": args.model, "vocab_size": len(self.chars)}
        if args.model == "gpt":
            self.model_args.update({k: getattr(args, k) for k in GPT_SIZES})
        # A lower bound of one step's activations: a few float32 (B, T, C) tensors per layer, the
        # logits, and with the explicit attention its (B, nh, T, T) weights.
        B, T = args.batch_size, args.block_size
        per_position = len(self.chars) + (8 * args.n_layer * args.n_embd if args.model == "gpt" else 0)
        weights = args.n_layer * args.n_head * T if args.model == "gpt" and not self.fused_attention else 0
        refuse_what_cannot_fit(4 * B * T * (per_position + weights), device,
                               "lower --batch-size first, then --block-size or --n-embd")
        if dtype == torch.float32:
            self.autocast = contextlib.nullcontext
        else:
            self.autocast = lambda: torch.autocast(device.type, dtype=dtype)
        # float16 only (enabled=False makes every call a pass-through): scale the loss up before
        # backward so that small gradients survive float16's range, unscale them before the step,
        # and skip a step whose gradients overflowed to inf or NaN, halving the scale. The scale
        # grows again (x2 every 2000 clean steps): it settles just below where gradients overflow.
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.skipped_steps, self.bad_losses_in_a_row = 0, 0

        if self.master:
            self.take_out_dir()

    def take_out_dir(self):
        """Make --out-dir ours for this run: one run at a time in it, and an earlier run is only
        continued (--resume) or, with --overwrite, replaced; never replaced by a forgotten --resume."""
        args = self.args
        try:
            os.makedirs(args.out_dir, exist_ok=True)
            self.lock = os.open(args.out_dir, os.O_RDONLY)   # held until the process ends
        except OSError as e:
            raise UserError(f"cannot write to --out-dir {args.out_dir}: {e.strerror}")
        try:
            import fcntl  # Linux and macOS: a lock on the folder that the system drops when we exit
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another train.py is running in {args.out_dir}/; wait for it to finish, or use "
                            f"another --out-dir")
        except (ImportError, OSError):
            pass  # no locks here (Windows, some network disks): runs are not guarded against each other
        if not args.resume and not args.overwrite:
            found = describe_run(args.out_dir)
            if found and found.startswith("a log.csv"):
                raise UserError(f"{args.out_dir}/ holds {found}; train in another --out-dir, or start over "
                                f"there with --overwrite")
            if found:
                raise UserError(f"{args.out_dir}/ already holds a run ({found}); continue it with --resume, "
                                f"train in another --out-dir, or start over there with --overwrite")
        if args.overwrite and not args.resume:  # replace the earlier run whole, not checkpoint by checkpoint
            for path in (self.ckpt_path, self.last_path):
                if os.path.exists(path):
                    os.remove(path)
        for path in (self.ckpt_path, self.last_path):  # left by a process killed mid-save
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")

    def start(self, model, optimizer):
        """Take up the fresh model and optimiser; with --resume, load the saved run into them -> (step, best val)."""
        self.model, self.optimizer = model, optimizer
        n_params = sum(p.numel() for p in model.parameters())
        self.say(f"model: {self.args.model}, {n_params:,} parameters, vocab_size {len(self.chars)}")
        self.iter_num, self.best_val_loss, self.best_iter_num, self.resumed_at = 0, math.inf, None, None
        if self.saved is not None:
            self.restore(self.saved)
        if self.master:
            self.start_log()
        self.last_scale = self.scaler.get_scale()  # float16: the loss scale; a drop means a skipped step
        if self.world_size > 1:
            torch.manual_seed(self.args.seed + 1000 * self.rank + self.iter_num)  # each rank draws its own batches
        self.started = clock() - (self.saved["elapsed_s"] if self.saved else 0.0)  # time counts across resumes
        return self.iter_num, self.best_val_loss

    def wrap(self, model):
        """The model as the training step calls it: compiled with --compile, in DDP under torchrun.

        torch.compile traces the model into fused kernels: it takes a while to compile (41 s here)
        and pays off on GPUs; on our 2-core CPU its steps were slower (413 vs 317 ms), so it is
        opt-in. DistributedDataParallel averages the gradients across ranks. Both wrappers are
        only for the training step: evaluation and state_dict() use `model` itself, so
        checkpoints never carry their key prefixes ("_orig_mod.", "module.").
        """
        forward = torch.compile(model) if self.args.compile else model
        if self.world_size > 1:
            # DDP also copies rank 0's buffers to the other ranks before each forward: here only the
            # constant causal mask (64 KB at block_size 256), a negligible cost.
            forward = torch.nn.parallel.DistributedDataParallel(forward)
        return forward

    def restore(self, saved):
        """Load a last.pt written by this project into the fresh model and optimiser, and take up its step."""
        if saved["vocab"] != self.chars:
            raise UserError(f"{self.last_path} was trained on another vocabulary than {self.args.data_dir}/ "
                            f"(prepared from another text?); prepare its text again or train afresh")
        if saved["model_args"] != self.model_args:
            raise UserError(f"{self.last_path} holds a different model ({saved['model_args']}); "
                            f"resume without size flags, or train afresh in another --out-dir")
        try:
            self.model.load_state_dict(saved["model"])
        except RuntimeError as e:
            raise UserError(f"{self.last_path} does not match its model description ({first_sentence(e)})")
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.last_path} was trained with --optimizer {saved['config'].get('optimizer', 'adamw')}; "
                            f"resume without --optimizer, or train afresh in another --out-dir")
        if self.scaler.is_enabled() and saved.get("scaler"):  # a float16 run's loss scale and its counters
            self.scaler.load_state_dict(saved["scaler"])
            self.skipped_steps = saved.get("skipped_steps", 0)
        torch.set_rng_state(saved["rng_state"].cpu())
        if self.device.type == "cuda" and saved.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng_state"].cpu())
        self.iter_num, self.best_val_loss = saved["iter_num"], saved["best_val_loss"]
        self.best_iter_num = saved.get("best_iter_num")
        self.resumed_at = self.iter_num  # the saved run already evaluated this step
        self.say(f"resuming from {self.last_path} at step {self.iter_num} (best val loss {self.best_val_loss:.4f})")

    def start_log(self):
        """A fresh run starts a fresh log.csv. A resumed one keeps the rows up to the step it resumes
        from (a run killed after its last save logged evaluations that last.pt does not hold)."""
        rows, problem = [], None
        if self.saved is not None:
            rows, problem = read_log(self.log_path)
            rows = [row for row in rows if row[0] <= self.iter_num]
            if problem:
                self.say(f"note: {problem}; the log continues with the rows it could read")
        try:
            with open(self.log_path + ".tmp", "w", newline="") as f:
                csv.writer(f).writerows([LOG_HEADER] + [[i, f"{t:.4f}", f"{v:.4f}", f"{e:.2f}"] for i, t, v, e in rows])
            os.replace(self.log_path + ".tmp", self.log_path)
        except OSError as e:
            raise UserError(f"cannot write {self.log_path}: {e.strerror}")

    def nothing_to_do(self, iter_num):
        """Whether a resumed run is already done; says so (a resume that trains nothing is no error)."""
        if self.saved is None or not self.finished(iter_num):
            return False
        limit = (f"--time-budget {self.args.time_budget:g} minutes" if self.args.time_budget is not None
                 else f"--max-iters {self.args.max_iters}")
        self.say(f"{self.last_path} is at step {iter_num}, which already reaches {limit}: nothing to train; "
                 f"raise it to continue. Files left as they were.")
        self.release()
        return True

    def release(self):
        """Let another run use --out-dir (the lock would otherwise last as long as this process)."""
        if getattr(self, "lock", None) is not None:
            os.close(self.lock)
            self.lock = None

    def elapsed(self):
        """Seconds of this run so far, counting the time of the runs it resumes."""
        return clock() - self.started

    def finished(self, iter_num):
        """Whether the run ends at iter_num: after max_iters steps, or with a time budget once it is spent.

        With a time budget this also reads the clock for the step's schedule_step. Under torchrun
        rank 0's clock counts for every rank: all must stop at the same step and use the same
        learning rate, or their weights would part."""
        if self.args.time_budget is None:
            return iter_num >= self.args.max_iters
        self.now = self.elapsed()
        if self.world_size > 1:
            now = torch.tensor([self.now], dtype=torch.float64, device=self.device)
            torch.distributed.broadcast(now, src=0)
            self.now = now.item()
        return self.now >= 60 * self.args.time_budget

    def schedule_step(self, iter_num):
        """Where the learning-rate schedule stands: the step; or with a time budget the share of the
        budget used (as finished() last read it) times lr_decay_iters, so that warmup_iters and
        lr_decay_iters count in "steps of a run of lr_decay_iters steps", stretched to fit the time."""
        if self.args.time_budget is None:
            return iter_num
        return min(1.0, self.now / (60 * self.args.time_budget)) * self.args.lr_decay_iters

    def agree(self, stop_requested):
        """Whether to stop for a signal: under torchrun the ranks may see it at different steps, so
        each takes the largest request of all (a rank leaving alone would leave the others waiting)."""
        if self.world_size == 1:
            return stop_requested
        flag = torch.tensor([stop_requested], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def evaluates(self, iter_num):
        """Whether this process evaluates at iter_num: rank 0 does, except at the step a resume starts from."""
        return self.master and iter_num != self.resumed_at

    def progress_bar(self, iter_num):
        # disable=None: a live bar in a terminal; none when the output goes to a file or a pipe.
        # With a time budget the number of steps is not known in advance: the bar counts them.
        total = self.args.max_iters if self.args.time_budget is None else None
        return tqdm(total=total, initial=iter_num, desc="training", unit="it",
                    dynamic_ncols=True, disable=None if self.master else True)

    def check_loss(self, loss_value, iter_num):
        """After a step: stop the run (one line) on a loss that is inf or NaN; in float16, only once
        it stays so, and count the steps the loss scaler skipped.

        In float16 one unlucky batch can overflow float16's range in the forward pass: its loss is
        inf or NaN, so are its gradients, and the scaler skips that step, leaving the weights
        unharmed (it also skips steps whose scaled gradients alone overflowed, and lowers the
        scale; a drop in the scale marks a skip). That is not divergence; a loss still inf or NaN
        after PATIENT_STEPS steps in a row is.
        """
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.skipped_steps += scale < self.last_scale
            self.last_scale = scale
        if math.isfinite(loss_value):
            self.bad_losses_in_a_row = 0
            return
        self.bad_losses_in_a_row += 1
        if self.scaler.is_enabled() and self.bad_losses_in_a_row < PATIENT_STEPS:
            return
        raise UserError(f"the loss became {loss_value} at step {iter_num}; stopped. {self.ckpt_path} keeps "
                        f"the best weights and {self.last_path} the last good state; try a lower --learning-rate")

    def checkpoint(self, iter_num, best_val_loss, with_state):
        """The plain dict a checkpoint holds: weights, sizes, vocabulary and settings; with_state adds
        what exact resumption needs (optimiser, random state, time spent)."""
        saved = {"model": self.model.state_dict(), "model_args": self.model_args, "vocab": self.chars,
                 "iter_num": iter_num, "best_val_loss": best_val_loss, "config": vars(self.args)}
        if with_state:
            saved.update(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), elapsed_s=self.elapsed(),
                         skipped_steps=self.skipped_steps,
                         best_iter_num=self.best_iter_num, rng_state=torch.get_rng_state(),
                         cuda_rng_state=torch.cuda.get_rng_state() if self.device.type == "cuda" else None)
        return saved

    def record(self, iter_num, losses, best_val_loss, improved):
        """After an evaluation: a row in log.csv; the weights in ckpt.pt if val improved; the state in last.pt."""
        with open(self.log_path, "a", newline="") as f:
            csv.writer(f).writerow([iter_num, f"{losses['train']:.4f}", f"{losses['val']:.4f}",
                                    f"{self.elapsed():.2f}"])
        if improved:
            self.best_iter_num = iter_num
        # last.pt first: killed between the two saves, a resume knows the new best loss, so ckpt.pt
        # (the older, worse weights) is replaced at the next improvement and never better by worse.
        save_checkpoint(self.last_path, self.checkpoint(iter_num, best_val_loss, with_state=True))
        if improved:
            save_checkpoint(self.ckpt_path, self.checkpoint(iter_num, best_val_loss, with_state=False))

    def finish(self, iter_num, best_val_loss, interrupted):
        """Save the state the run ended in (also after Ctrl-C) and say which file holds what."""
        if self.world_size > 1:
            # Every rank waits here for rank 0's last evaluation: a rank that left the group
            # while another was still in it could abort the whole run.
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
            if not self.master:
                return
        save_checkpoint(self.last_path, self.checkpoint(iter_num, best_val_loss, with_state=True))
        self.release()  # the run's last write to --out-dir is done
        resume = "python train.py --resume" + (f" --out-dir {self.args.out_dir}" if self.args.out_dir != "out" else "")
        best = f"best val loss {best_val_loss:.4f} at step {self.best_iter_num}: {self.ckpt_path}, the weights generate.py samples"
        if interrupted:
            print(f"interrupted at step {iter_num} ({signal.Signals(interrupted).name}); saved {self.last_path}; "
                  f"continue with: {resume}")
            print(best)
            raise SystemExit(128 + interrupted)  # the exit status a shell gives a command the signal stopped
        print(plot_log(self.log_path))
        if self.scaler.is_enabled():
            print(f"float16: the loss scaler skipped {self.skipped_steps} step(s) whose gradients overflowed "
                  f"(scale now {self.scaler.get_scale():g})")
        print(best)
        budget = f" (time budget {self.args.time_budget:g} min)" if self.args.time_budget is not None else ""
        print(f"last step {iter_num}: {self.last_path}, the state --resume continues from; "
              f"losses in {self.log_path}; {self.elapsed():.1f} s{budget}")


def configure_muon(model, learning_rate, weight_decay, muon_lr_scale, decay, no_decay):
    """Muon for the weight matrices inside the blocks, AdamW for the other parameters -> Optimizers.

    Muon (MomentUm Orthogonalized by Newton-Schulz) keeps a momentum of the gradient, as SGD
    does, but does not step along it directly. A weight matrix's momentum is dominated by a few
    directions, and a plain step would move the matrix mostly along those. Muon replaces the
    momentum by approximately the nearest orthogonal matrix (the same singular vectors, every
    singular value near 1), found with five Newton-Schulz iterations of matrix multiplies, so
    every direction of the matrix moves at a similar rate. AdamW scales each number on its own
    and never sees the matrix as a whole. Measured on the CPU recipe (2-core AMD EPYC, 2026-11-24,
    step 900 of the same 1,100-step schedule): val loss 1.504 with Muon, 1.549 with AdamW. It is made for the 2-D
    weights between layers; the embeddings, the output head, biases and layer-norm gains stay
    with AdamW. adjust_lr_fn="match_rms_adamw" sizes Muon's steps like AdamW's, so one learning
    rate serves both; muon_lr_scale (default 2, which did better than 1 in those runs: 1.494 vs
    1.504 at step 900) multiplies it for the matrices.
    """
    if not hasattr(torch.optim, "Muon"):
        raise UserError(f"--optimizer muon needs PyTorch 2.9 or later (this is {torch.__version__}); "
                        f"upgrade torch or use --optimizer adamw")
    matrices = [p for block in model.blocks for p in block.parameters() if p.dim() == 2]
    in_muon = {id(p) for p in matrices}
    muon = torch.optim.Muon([{"params": matrices, "lr_scale": muon_lr_scale}], lr=learning_rate * muon_lr_scale,
                            weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW([{"params": [p for p in decay if id(p) not in in_muon], "weight_decay": weight_decay,
                                "lr_scale": 1.0},
                               {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}],
                              lr=learning_rate, betas=(0.9, 0.99))
    return Optimizers(muon=muon, adamw=adamw)


class Optimizers:
    """Several torch optimisers used as one (Muon for some parameters, AdamW for the others): the
    training loop, the loss scaler and checkpoints see one param_groups list, one step, one state."""

    def __init__(self, **optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        for optimizer in self.optimizers.values():
            optimizer.step()

    def state_dict(self):
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state):
        if set(state) != set(self.optimizers):
            raise KeyError(f"saved optimisers {sorted(state)}, expected {sorted(self.optimizers)}")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


# -----------------------------------------------------------------------------
# Checkpoints: plain dicts of tensors and numbers, written atomically, read with weights_only

def save_checkpoint(path, checkpoint):
    """torch.save to a temporary file, then rename over `path`: a crash leaves the old or the new file."""
    tmp = path + ".tmp"
    # Serialised in memory first: torch.save writing to a file reports a failed write (a full
    # disk) as an opaque RuntimeError, where f.write raises an OSError that names its cause.
    serialised = io.BytesIO()
    torch.save(checkpoint, serialised)
    try:
        with open(tmp, "wb") as f:
            f.write(serialised.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # the save failed (a full disk, a second Ctrl-C): no half file left
            os.remove(tmp)


CHECKPOINT_KEYS = ("model", "model_args", "vocab", "iter_num", "best_val_loss")
RESUME_KEYS = ("optimizer", "config", "rng_state", "elapsed_s")
FIELD_TYPES = {"model": dict, "model_args": dict, "vocab": str, "iter_num": int, "best_val_loss": (float, int),
               "optimizer": dict, "config": dict, "rng_state": torch.Tensor, "elapsed_s": (float, int)}


def read_checkpoint(path, device, for_resume=False):
    """torch.load a checkpoint written by save_checkpoint -> the plain dict, or a one-line UserError.

    weights_only=True refuses anything but tensors and plain Python values, so a checkpoint from
    the internet cannot run code on your machine when it is loaded.
    """
    if not os.path.exists(path):
        if for_resume:
            raise UserError(f"nothing to resume: no {path}; train afresh with: python train.py")
        raise UserError(f"no checkpoint at {path}; train one first: python train.py")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # not a pickle at all, e.g. random bytes
            raise UserError(f"{path} is not a readable checkpoint (not a PyTorch file)")
        # A real pickle that names a Python function or class: weights_only refused to import it.
        raise UserError(f"refusing to load {path}: it holds Python objects that could run code, "
                        f"not just weights (only load checkpoints written by train.py)")
    except Exception as e:  # a truncated file, a directory, ...
        raise UserError(f"{path} is not a readable checkpoint ({first_sentence(e)})")
    needed = CHECKPOINT_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [k for k in needed if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise UserError(f"{path} is not a {'resumable ' if for_resume else ''}checkpoint of this project "
                        f"(missing {', '.join(missing)})")
    for key in needed:  # a field of the wrong type would fail later, far from its cause
        kind = FIELD_TYPES[key]
        if not isinstance(checkpoint[key], kind) or isinstance(checkpoint[key], bool):
            wanted = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise UserError(f"{path} is damaged: its {key} is a {type(checkpoint[key]).__name__}, not a {wanted}")
    if not all(isinstance(v, torch.Tensor) for v in checkpoint["model"].values()):
        raise UserError(f"{path} is damaged: its model holds something other than tensors")
    if len(checkpoint["vocab"]) != checkpoint["model_args"].get("vocab_size"):
        raise UserError(f"{path} is damaged: its vocabulary has {len(checkpoint['vocab'])} characters "
                        f"but its model expects {checkpoint['model_args'].get('vocab_size')}")
    return checkpoint


def load_checkpoint(path, device, fused_attention=True):
    """Read a checkpoint and rebuild its model -> (checkpoint dict, model on device, in eval mode)."""
    checkpoint = read_checkpoint(path, device)
    try:
        model = build_model(checkpoint["model_args"], fused_attention)
        model.load_state_dict(checkpoint["model"])
    except Exception as e:  # unknown model kind, wrong sizes, missing or extra weights
        raise UserError(f"{path} does not match its model description ({first_sentence(e)})")
    return checkpoint, model.to(device).eval()


def first_sentence(error):
    """The first sentence of an exception's message, for one-line error reports."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.split(". ")[0][:160]


# -----------------------------------------------------------------------------
# Ctrl-C and SIGTERM: finish the step, save, and stop

@contextlib.contextmanager
def stop_when_signalled():
    """While inside: Ctrl-C (SIGINT) or SIGTERM (sent by `timeout`, `kill`, job schedulers and
    `docker stop`) sets .requested to the signal's number: the loop stops after its step and
    saves. A second one stops at once, without saving."""
    stop = argparse.Namespace(requested=0)

    def request_stop(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = signum
    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def torchrun_environment():
    """(world_size, rank, local_rank) from the variables torchrun sets; (1, 0, 0) without them."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] == "1":
        return 1, 0, 0
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not: start the processes with torchrun, "
                        f"or unset WORLD_SIZE to train alone")
    try:
        world_size, rank, local_rank = (int(os.environ[name]) for name in names[:3])
    except ValueError:
        raise UserError(f"WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers, got "
                        f"{os.environ['WORLD_SIZE']!r}, {os.environ['RANK']!r}, {os.environ['LOCAL_RANK']!r}")
    if not 0 <= rank < world_size or local_rank < 0:
        raise UserError(f"RANK={rank} must be between 0 and WORLD_SIZE-1 ({world_size - 1})")
    return world_size, rank, local_rank


# -----------------------------------------------------------------------------
# Seeing the run: the loss curves of log.csv, drawn in the terminal

def plot_log(log_path, width=64, height=16):
    """log.csv -> a text picture of the train (.) and val (o) loss against the step.

    Where the two curves part, with val above train, the model has started to memorise its
    training text rather than learn what carries over to text it has not seen: overfitting.
    """
    rows, problem = read_log(log_path)
    note = f"\n(note: {problem}; drawn from the rows it could read)" if problem else ""
    rows = [row[:3] for row in rows]
    if len(rows) < 2:
        return f"{log_path}: fewer than two evaluations, nothing to draw yet{note}"
    best = min(r[2] for r in rows)
    # The first loss (~ln(vocab_size)) would squash everything after it: from three evaluations
    # on, the picture starts at the second one.
    if len(rows) >= 3:
        rows = rows[1:]
    steps = [r[0] for r in rows]
    lowest, highest = min(min(r[1:]) for r in rows), max(max(r[1:]) for r in rows)
    grid = [[" "] * width for _ in range(height)]

    def row_of(loss):
        return round((highest - loss) / max(highest - lowest, 1e-9) * (height - 1))

    for col in range(width):
        step = steps[0] + (steps[-1] - steps[0]) * col / (width - 1)
        for series, mark in ((1, "."), (2, "o")):
            value = float(np.interp(step, steps, [r[series] for r in rows]))  # between evaluations: a straight line
            cell = grid[row_of(value)]
            cell[col] = "#" if cell[col] not in (" ", mark) else mark
    lines = []
    for i, cells in enumerate(grid):
        label = f"{highest - (highest - lowest) * i / (height - 1):6.3f}" if i % 3 == 0 or i == height - 1 else ""
        lines.append(f"{label:>6} |" + "".join(cells))
    lines.append("       +" + "-" * width)
    lines.append(f"        step {steps[0]}" + f"step {steps[-1]}".rjust(width - 5 - len(str(steps[0]))))
    lines.append(f"        . train loss   o val loss   # both    (best val {best:.4f})")
    return "\n".join(lines) + note


LOG_HEADER = ["iter", "train_loss", "val_loss", "elapsed_s"]


def read_log(log_path):
    """log.csv -> ([(iter, train_loss, val_loss, elapsed_s), ...], what was wrong with it or None).

    Tolerant: a log can be missing (a checkpoint copied alone) or end in a row cut short (a
    process killed mid-write); the rows that can be read are kept, the problem is named."""
    if not os.path.exists(log_path):
        return [], f"{log_path} is missing"
    rows, bad = [], 0
    with open(log_path, newline="") as f:
        for line in csv.reader(f):
            try:
                row = (int(line[0]), float(line[1]), float(line[2]), float(line[3]))
                if not all(math.isfinite(x) for x in row[1:]):
                    raise ValueError
                rows.append(row)
            except (ValueError, IndexError):
                bad += line != LOG_HEADER
    return rows, (f"{log_path} has {bad} unreadable row(s)" if bad else None)


def describe_run(out_dir):
    """What an earlier run left in out_dir, as 'step N, best val loss X', or None if nothing."""
    for name in ("last.pt", "ckpt.pt"):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            try:
                saved = read_checkpoint(path, torch.device("cpu"))
                return f"{name} at step {saved['iter_num']}, best val loss {saved['best_val_loss']:.4f}"
            except UserError:
                return f"{name}, which cannot be read"
    if os.path.exists(os.path.join(out_dir, "log.csv")):
        return "a log.csv from a run stopped before its first checkpoint"
    return None


# -----------------------------------------------------------------------------
# Command line

def number(kind, zero_allowed=False, below=None):
    """An argparse type: a finite number of the given kind that is > 0 (or >= 0 with zero_allowed),
    and below `below` where that is given."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not math.isfinite(value):  # float("nan") and float("inf") parse, but no setting means them
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < 0 or (value == 0 and not zero_allowed):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_allowed else 'greater than 0'}, got {text}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be below {below}, got {text}")
        return value
    return parse


def parse_args(argv=None):
    """Flags -> args. Settings not given stay None until fill_in_hyperparameters."""
    parser = argparse.ArgumentParser(
        description="Train a character-level language model on the text prepared by prepare.py. "
                    "Writes <out-dir>/ckpt.pt (the best weights, which generate.py samples), "
                    "<out-dir>/last.pt (the state --resume continues from) and <out-dir>/log.csv.")
    # Report mistakes as one line, not usage plus error.
    parser.error = lambda message: sys.exit(f"train.py: error: {message} (see --help)")
    parser.add_argument("--model", choices=["gpt", "bigram"], default=None,
                        help="which model to train (default: gpt, or the checkpoint's with --resume)")
    parser.add_argument("--preset", choices=["lecture", "cpu"], default=None,
                        help="GPT recipe: lecture = the lecture's 10,788,929-parameter model, 5000 steps; "
                             "cpu = tuned for ~10 minutes on 2 CPU cores (default: lecture on CUDA, cpu elsewhere)")
    hp = parser.add_argument_group("hyperparameters (defaults come from the recipe)")
    hp.add_argument("--batch-size", type=number(int), help="independent sequences per step (B)")
    hp.add_argument("--block-size", type=number(int), help="context length in characters (T)")
    hp.add_argument("--n-layer", type=number(int), help="Transformer blocks")
    hp.add_argument("--n-head", type=number(int), help="attention heads per block (must divide --n-embd)")
    hp.add_argument("--n-embd", type=number(int), help="channels per position (C)")
    hp.add_argument("--dropout", type=number(float, zero_allowed=True), help="dropout probability while training, 0 to <1")
    hp.add_argument("--max-iters", type=number(int), help="number of training steps")
    hp.add_argument("--eval-interval", type=number(int),
                    help="evaluate, log, and keep the weights if val improved, every this many steps")
    hp.add_argument("--eval-iters", type=number(int), help="batches averaged per split for each evaluation")
    hp.add_argument("--learning-rate", type=number(float), help="peak learning rate (Muon's matrices: --muon-lr-scale times it)")
    hp.add_argument("--min-lr", type=number(float, zero_allowed=True), help="learning rate at the end of the cosine decay")
    hp.add_argument("--warmup-iters", type=number(int, zero_allowed=True), help="steps of linear learning-rate warmup")
    hp.add_argument("--lr-decay-iters", type=number(int),
                    help="step at which the cosine decay reaches --min-lr (default: --max-iters)")
    hp.add_argument("--weight-decay", type=number(float, zero_allowed=True), help="AdamW weight decay on matrices")
    hp.add_argument("--grad-clip", type=number(float, zero_allowed=True), help="clip the gradient norm to this (0: off)")
    hp.add_argument("--optimizer", choices=["adamw", "muon"],
                    help="adamw for every weight, or muon for the blocks' weight matrices and adamw for the rest")
    hp.add_argument("--muon-lr-scale", type=number(float),
                    help="with --optimizer muon: the matrices' learning rate is this times --learning-rate (default: 2)")
    hp.add_argument("--time-budget", type=number(float), metavar="MINUTES",
                    help="train for this many minutes (counting resumed runs' time) instead of --max-iters steps; "
                         "the learning-rate schedule follows the share of the time used")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train; auto picks CUDA, then MPS, then CPU (default: auto)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                        help="number format of the matrix multiplies (float16 with a loss scaler); auto: "
                             "bfloat16 on GPUs of compute capability 8.0+ and CPUs with AVX512-BF16 or AMX, "
                             "float16 on older GPUs and Apple's MPS, else float32 (default: auto)")
    parser.add_argument("--attention", choices=["auto", "fused", "explicit"],
                        help="GPT attention: one fused PyTorch call, or the explicit masked softmax; the "
                             "same function in eval mode (in training on a CPU, fused skips dropout on the "
                             "attention weights) (default: auto, the faster one here)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the model: slow to start, faster per step (needs a C++ compiler on CPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a fresh run in an --out-dir that holds an earlier one, replacing it "
                             "(without this, train.py refuses to)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in <out-dir>/last.pt: weights, optimizer, step, "
                             "random state and hyperparameters (flags given now override them)")
    parser.add_argument("--plot", metavar="DIR",
                        help="draw the loss curves of DIR/log.csv (a finished or running run) and exit")
    parser.add_argument("--seed", type=number(int, zero_allowed=True, below=2**63), help="random seed (default: 1337)")
    parser.add_argument("--data-dir", help="where prepare.py wrote its files (default: data)")
    parser.add_argument("--out-dir", default="out", help="where ckpt.pt, last.pt and log.csv go (default: out)")
    return parser.parse_args(argv)


def fill_in_hyperparameters(args, saved=None):
    """Fill every setting left as None: from the saved run when resuming, else the defaults and the recipe."""
    given = {name for name, value in vars(args).items() if value is not None}
    if saved is not None:
        for name, value in saved["config"].items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
    for name, value in dict(model="gpt", device="auto", dtype="auto", attention="auto", compile=False,
                            seed=1337, data_dir="data", muon_lr_scale=2.0).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.model == "bigram":
        for name in GPT_SIZES[1:] + ("preset", "optimizer", "muon_lr_scale"):
            if name in given:
                raise UserError(f"--{name.replace('_', '-')} is for --model gpt; the bigram has no such setting")
        args.preset = "bigram"
    elif args.preset in (None, "bigram"):  # "bigram": resuming a bigram run with --model gpt
        args.preset = "lecture" if pick_device(args.device).type == "cuda" else "cpu"
    if "max_iters" in given and "time_budget" in given:
        raise UserError("--max-iters and --time-budget both given; a run ends by one of them: give one")
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if "max_iters" in given:  # a fixed number of steps: the same run wherever the number format is the same
        args.time_budget = None
    if args.lr_decay_iters is None:
        args.lr_decay_iters = args.max_iters
    if args.model == "gpt" and args.n_embd % args.n_head:
        raise UserError(f"--n-embd {args.n_embd} must be a multiple of --n-head {args.n_head}")
    if args.model == "gpt" and args.dropout >= 1:
        raise UserError(f"--dropout must be below 1, got {args.dropout}")


def kept(out_dir):
    """What a run that failed leaves behind, for its last line."""
    if any(os.path.exists(os.path.join(out_dir, name)) for name in ("ckpt.pt", "last.pt")):
        return f"the last checkpoints written in full are still in {out_dir}"
    return f"no checkpoint was written to {out_dir}"


def main(argv=None):
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C is handled below
    args = parse_args(argv)
    try:
        if args.plot:
            log_path = os.path.join(args.plot, "log.csv")
            if not os.path.isfile(log_path):
                raise UserError(f"cannot draw {log_path}: no such file")
            try:
                print(plot_log(log_path))
            except (OSError, ValueError, KeyError) as e:
                raise UserError(f"cannot draw {log_path}: {first_sentence(e)}")
            return
        train(args)
    except UserError as e:
        sys.exit(f"train.py: error: {e}")
    except OSError as e:  # e.g. the disk filled up while writing: save_checkpoint left the old file whole
        sys.exit(f"train.py: error: {e.strerror or e} ({e.filename or args.out_dir}); {kept(args.out_dir)}")
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print(f"train.py: interrupted; {kept(args.out_dir)}", file=sys.stderr)
        sys.exit(130)
    except (RuntimeError, MemoryError, OverflowError, ValueError) as e:  # out of memory; numbers too large
        if isinstance(e, MemoryError) or "memory" in str(e).lower():
            message = "out of memory: lower --batch-size first, then --block-size or --n-embd"
        else:
            message = f"{first_sentence(e)} ({type(e).__name__}; a very large setting can cause this)"
        sys.exit(f"train.py: error: {message}; {kept(args.out_dir)}")


if __name__ == "__main__":
    main()
