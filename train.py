"""Step 3 of the lesson, after prepare.py (the text as integers) and bigram.py (the simplest model): train
a model on the prepared text and watch the loss fall.

    python train.py                     # the GPT, with the recipe for this machine, into out/ (below)
    python train.py --preset lecture    # the lecture's model, 5,000 steps at nanoGPT's rates (wants a GPU)
    python train.py --resume            # continue the run saved in out/last.pt
    python train.py --model bigram --out-dir out-bigram   # the bigram baseline (seconds)
    python train.py --task addition --out-dir out-addition   # a GPT that learns to add (a minute or two)

tests/lecture_train.py holds the lecture's loop; read it first. train() below runs the same loop, and adds a
learning-rate schedule, gradient clipping, weight decay on matrices only, mixed precision (bfloat16, or
float16 with a loss scaler) where it is fast, and an end by the clock: on a CPU, the default run trains for
9.5 minutes, with RoPE (gpt.py) and Muon, a model and a batch fitted to the machine's speed. As in the
lecture's script, each piece of the lesson comes before the loop; what a real run also needs, the loop
calls from below the divider. After train(): Muon. The lesson ends at the divider; below it: exercise 2,
the machinery (devices, the data's checks, the run's files, Ctrl-C, torchrun, the loss plot), the command
line and RECIPES, which hold each kind of run's settings.
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
import time

import numpy as np
import torch
from tqdm import tqdm

from bigram import BigramLanguageModel
from gpt import GPT, PRESETS, GPTConfig
from prepare import decode, encode


def get_batch(data, batch_size, block_size, device, generator=None):
    """batch_size random chunks of data (a 1-D array of ids) -> inputs x (B, T) and targets y (B, T), y = x
    shifted by one: a chunk of block_size + 1 characters holds block_size examples, with contexts 1 to
    block_size long. The lecture's torch.stack of slices, as one numpy index (data is a numpy memory map)."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,) chunk starts
    offsets = ix.numpy()[:, None] + np.arange(block_size + 1)                     # (B, T + 1)
    chunk = torch.from_numpy(data[offsets].astype(np.int64))                      # (B, T + 1)
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()                  # (B, T), (B, T)
    return x.to(device), y.to(device)


def make_batches(args, device):
    """-> (data_info, train_batch, eval_batches). data_info: the characters (and what else defines the
    data), saved in checkpoints; train_batch(): a new random batch; eval_batches: {"train": [(x, y), ...],
    "val": [...]}, drawn once, so that every evaluation scores the same text (the lecture draws new ones
    each time)."""
    if args.task == "addition":
        return addition_batches(args, device)   # exercise 2, just below the lesson
    B, T = args.batch_size, args.block_size
    train_data, val_data, info = load_data(args.data_dir, T)
    fixed = torch.Generator().manual_seed(1234)   # its own random stream: the same batches every time

    def train_batch(generator=None):
        return get_batch(train_data, B, T, device, generator)
    eval_batches = {"val": [get_batch(val_data, B, T, device, fixed) for _ in range(args.eval_iters)],
                    "train": [train_batch(fixed) for _ in range(args.eval_iters)]}
    return info, train_batch, eval_batches


@torch.no_grad()
def estimate_loss(model, eval_batches, autocast=contextlib.nullcontext()):
    """The mean loss over each split's batches -> {"train": ..., "val": ...}. autocast: the run's number
    format (mixed precision, below; by default none). model.eval(): no dropout while measuring."""
    model.eval()
    out = {}
    for split, batches in eval_batches.items():
        losses = []
        for x, y in batches:
            with autocast:
                logits, loss = model(x, y)
            losses.append(loss.item() * len(x))   # by batch size: exercise 2's held-out set ends smaller
        out[split] = sum(losses) / sum(len(x) for x, _ in batches)
    model.train()
    return out


GPT_ARGS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "rope", "tie_weights", "activation",
            "qk_norm")   # what builds a GPT; the last four: changes from later papers (the cpu recipe: rope)


def build_model(args, chars, init=None):
    """The GPT (or the bigram) of args' sizes for this vocabulary; with init, its pretrained weights."""
    chars = "".join(chars)
    config = GPTConfig(vocab_size=len(chars), **{k: getattr(args, k) for k in GPT_ARGS},
                       fused_attention=args.attention == "fused")
    model = GPT(config) if args.model == "gpt" else BigramLanguageModel(len(chars))
    if init is not None:   # exercise 3: pretrained weights (parse_args took the sizes from the same file)
        if init["vocab"] != chars:
            fail(f"{args.init_from} knows other characters than {args.data_dir}/; prepare the text with "
                 f"its vocabulary: python prepare.py --vocab {init['config']['data_dir']}/vocab.json ...")
        model.load_state_dict(init["model"])
    return model


def configure_optimizers(model, optimizer, learning_rate, weight_decay, dtype=torch.float32,
                         muon_lr_scale=2.0):
    """-> torch optimisers that together train every parameter once. optimizer="adamw": AdamW (the
    lecture's optimiser) trains them all; "muon": Muon (after train()) trains the blocks' weight matrices at
    muon_lr_scale times the rate, AdamW the rest; Muon orthogonalises in bfloat16 if dtype, the run's
    number format, is bfloat16, else in float32. Weight decay pulls weights towards zero; biases and
    layer-norm gains, one number per channel, are spared. beta2 0.99: the gradients' scale is a mean over
    about the last 100 steps, not 1,000, so it follows the loss's fast early changes."""
    in_blocks = [p for block in model.blocks for p in block.parameters()] if optimizer == "muon" else []
    matrices = [p for p in in_blocks if p.dim() == 2]
    rest = [p for p in model.parameters() if all(p is not m for m in matrices)]   # `in` would compare values
    adamw = torch.optim.AdamW([   # "lr_scale": each group's rate is the schedule's times this
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
    ], lr=learning_rate, betas=(0.9, 0.99))
    if not matrices:
        return [adamw]
    orthogonalize_in = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    muon = Muon([{"params": matrices, "lr_scale": muon_lr_scale}], lr=learning_rate * muon_lr_scale,
                weight_decay=weight_decay, orthogonalize_in=orthogonalize_in)
    return [muon, adamw]


def get_lr(step, learning_rate, min_lr, warmup_iters, max_iters):
    """Linear warmup for warmup_iters steps (early estimates of the gradient's scale are poor), then
    cosine decay to min_lr at max_iters (small late steps settle into a minimum). Under a time budget, step
    is the share of the minutes used times max_iters: the warmup takes warmup_iters / max_iters of them."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / warmup_iters
    if step >= max_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, max_iters - warmup_iters)      # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def optimizer_step(model, optimizers, scaler, lr, grad_clip):
    """The lecture's optimizer.step(), for each optimiser at lr (times each group's lr_scale), once the
    scaler has divided its scale out of the gradients and their length is capped at grad_clip (0: no cap)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        scaler.unscale_(optimizer)                 # the true gradients, for the clip below
    if grad_clip > 0:   # gradient clipping: one unlucky batch cannot throw the weights far
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for optimizer in optimizers:
        scaler.step(optimizer)                     # optimizer.step(), unless float16 overflowed
    scaler.update()


def sample_text(model, chars, device, length=80):
    """The model's generate(): its first `length` characters after a newline, drawn with a generator of
    their own: every evaluation's line starts from the same seed, so they compare; training's is untouched."""
    model.eval()
    start = torch.tensor([encode("\n", chars) if "\n" in chars else [0]], device=device)      # (1, 1)
    idx = model.generate(start, length, generator=torch.Generator(device).manual_seed(0))   # (1, 1 + length)
    model.train()
    return decode(idx[0, 1:].tolist(), chars).replace("\n", "↵")


def train(args, saved=None, init=None):
    """The lecture's loop (tests/lecture_train.py) with the pieces above. What a real run also needs (the
    device, its files, the clock, Ctrl-C, torchrun) is in helpers below the divider, named for what they
    do. saved: last.pt's contents, to resume; init: a checkpoint whose weights start a fresh run
    (exercise 3). -> the best validation loss."""
    device, dtype, ranks = set_up(args)   # device, number format; fills in the cpu recipe's sizes for it
    torch.manual_seed(args.seed)          # the lecture's manual_seed(1337): the same first weights every run
    data_info, train_batch, eval_batches = make_batches(args, device)
    model = build_model(args, data_info["chars"], init).to(device)
    if ranks.master:   # under torchrun (several processes), rank 0 speaks for all
        print(f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    optimizers = configure_optimizers(model, args.optimizer, args.learning_rate, args.weight_decay, dtype)
    # Mixed precision (nanoGPT's two lines): the matrix multiplies in bfloat16 or float16. float16's small
    # range needs the scaler: backward runs on the loss times a large scale, so that tiny gradients do not
    # round to zero; the step divides it out, or skips a step whose gradients overflowed. In float32 and
    # bfloat16 the scaler does nothing.
    autocast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    iter_num, best_val_loss, elapsed = 0, math.inf, 0.0
    if saved is not None:   # --resume: the saved weights, optimisers, step, clock and random state
        iter_num, best_val_loss, elapsed = resume(args, saved, model, optimizers, scaler, data_info, device)
    step_model = wrap_in_ddp(model, args, ranks, iter_num)   # model, or under torchrun DDP's wrapper of it
    with RunControl(args, ranks, saved, iter_num, elapsed) as run:   # the clock, Ctrl-C, the bar, the log
        while True:
            # How much of the run is done, 0 -> 1: of its max_iters steps, or of its time budget's minutes.
            seconds = run.clock()   # since the run began, resumed runs included (under torchrun, rank 0's)
            progress = seconds / (60 * args.time_budget) if args.time_budget else iter_num / args.max_iters
            if (iter_num % args.eval_interval == 0 or progress >= 1) and ranks.master:   # and at the end
                losses = estimate_loss(model, eval_batches, autocast)
                improved = losses["val"] < best_val_loss   # ckpt.pt: the lowest val loss so far
                best_val_loss = min(best_val_loss, losses["val"])
                run.bar.write(f"step {iter_num}: train loss {losses['train']:.4f}, val loss "
                              f"{losses['val']:.4f} ({seconds:.1f} s)" + (" -> ckpt.pt" if improved else ""))
                if args.task == "text":   # what the model writes at this loss, the same draw every time
                    run.bar.write("sample: " + sample_text(model, data_info["chars"], device))
                else:   # exercise 2: the share of held-out sums it answers exactly right
                    losses["val_exact"] = exact_match(model, eval_batches["val"], autocast)
                    run.bar.write(f"exact match: {losses['val_exact']:.2%}")
                save_run(args, model, optimizers, scaler, data_info, iter_num, best_val_loss, run, losses,
                         improved)
            if progress >= 1 or run.interrupted():   # Ctrl-C or SIGTERM: stop; finish() saves this state
                break
            step = progress * args.max_iters if args.time_budget else iter_num   # where the schedule is
            lr = get_lr(step, args.learning_rate, args.min_lr, args.warmup_iters, args.max_iters)
            x, y = train_batch()
            with autocast:
                logits, loss = step_model(x, y)
            model.zero_grad(set_to_none=True)              # optimizer.zero_grad() for all the optimisers
            scaler.scale(loss).backward()                  # loss.backward(), through the scaler
            optimizer_step(model, optimizers, scaler, lr, args.grad_clip)   # at rate lr: clip, then step
            iter_num += 1
            run.stepped(iter_num, loss.item(), lr, scaler)   # the bar; stops a loss gone inf or NaN
        finish(args, model, optimizers, scaler, data_info, iter_num, best_val_loss, run, progress)
    return best_val_loss


# Past the lecture, but part of the lesson, since the default CPU run trains its weight matrices with it.
class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al., 2024) for weight matrices. A matrix's gradient is dominated by a few directions,
    and a plain step moves it mostly along those; Muon steps along the nearest orthogonal matrix instead
    (the same directions, all at one size), and learns more per step. It computes what torch.optim.Muon
    does with adjust_lr_fn="match_rms_adamw", but orthogonalises in float32 where asked: a CPU without
    bfloat16 hardware emulates bfloat16 at a small fraction of float32's speed."""

    def __init__(self, params, lr, weight_decay, momentum=0.95, orthogonalize_in=torch.bfloat16):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum))
        self.orthogonalize_in = orthogonalize_in

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                momentum = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                momentum.lerp_(p.grad, 1 - group["momentum"])            # a running mean of the gradients
                direction = p.grad.lerp(momentum, group["momentum"])     # Nesterov's: a look one step ahead
                update = orthogonalize(direction.to(self.orthogonalize_in))              # (rows, columns)
                p.mul_(1 - group["lr"] * group["weight_decay"])                          # weight decay
                p.add_(update, alpha=-group["lr"] * 0.2 * max(p.shape) ** 0.5)   # RMS ~0.2, like AdamW's


def orthogonalize(G, steps=5):
    """G (m, n) = U S V^T -> about U V^T: `steps` Newton-Schulz iterations of an odd polynomial push every
    singular value towards 1 (those above a tenth of the largest end between 0.5 and 1.5). Its coefficients
    are Jordan et al.'s, chosen to rise steeply from 0 (small singular values grow fast) over exactness."""
    X = G.T if G.size(0) > G.size(1) else G              # (short, long): XX^T is the smaller square
    X = X / X.norm().clamp(min=1e-7)                     # every singular value at most 1
    for _ in range(steps):
        A = X @ X.T                                      # (short, short)
        X = 3.4445 * X + (-4.7750 * A + 2.0315 * A @ A) @ X
    return X.T if G.size(0) > G.size(1) else X           # G's shape


# =================================================================================================
# The lesson ends here. Below: exercise 2's sums, the machinery, then the command line and the settings.
# =================================================================================================

# Exercise 2 of the lecture: a GPT that adds. Each example is one problem, "a+b=" and then the sum, every
# number written the way we add by hand, its least significant digit first: 54 + 9 = 63 is "450+900=3600"
# with 3 digits. The sum's digit i then depends only on a's and b's digit i and the carry, which the
# digits already written decide. And digit i always stands the same distance from a's digit i and b's,
# whatever i: attention that knows only relative positions (RoPE, which the recipe takes for long sums)
# learns one pattern that finds them for every digit. No data files: a batch is drawn at random, and a
# fixed set of problems is held out, never trained on, to test with.
ADDITION_CHARS = "0123456789+="   # the ids 0-9 are the digits themselves; "+" is 10, "=" is 11


def addition_problems(n, digits, generator=None):
    """n random sums a + b of `digits`-digit numbers (zero-padded) -> ids (n, 3 * digits + 3): "a+b=" and
    the sum, in digits + 1 digits (a carry may need one more), every number units first."""
    a, b = torch.randint(10, (2, n, digits), generator=generator)           # (n, digits) each, units first
    sum_digits, carry = [], torch.zeros(n, dtype=torch.long)
    for i in range(digits):   # column by column, as by hand: any number of digits, never an overflow
        column = a[:, i] + b[:, i] + carry                                   # (n,)
        sum_digits.append(column % 10)
        carry = column // 10
    answer = torch.stack(sum_digits + [carry], dim=1)                       # (n, digits + 1)
    plus, equals = torch.full((n, 1), 10), torch.full((n, 1), 11)
    return torch.cat([a, plus, b, equals, answer], dim=1)                    # (n, 3 * digits + 3)


def addition_batches(args, device):
    """make_batches() for the sums: random problems to train on; a fixed set held out, never trained on."""
    B, D = args.batch_size, args.digits
    n = min(10_000, 10 ** (2 * D) // 10)   # held out: 10,000 draws, or a tenth of all sums there are
    held_out = addition_problems(n, D, torch.Generator().manual_seed(0)).unique(dim=0)  # (<= n, 3D + 3)
    held_out_set = set(map(tuple, held_out.tolist()))

    def train_batch(generator=None):   # B random problems; any that is held out is drawn again
        problems = addition_problems(B, D, generator)                   # (B, 3D + 3)
        while again := [i for i, p in enumerate(problems.tolist()) if tuple(p) in held_out_set]:
            problems[again] = addition_problems(len(again), D, generator)
        return addition_batch(problems, D, device)
    val = [addition_batch(problems, D, device) for problems in held_out.split(B)]
    fixed = torch.Generator().manual_seed(1234)
    info = {"chars": list(ADDITION_CHARS), "digits": D}
    return info, train_batch, {"train": [train_batch(fixed) for _ in range(args.eval_iters)], "val": val}


def addition_batch(problems, digits, device):
    """problems (B, 3D + 3) -> x, y (B, 3D + 2): y is x shifted by one, but -1 (no target: the loss skips
    it) wherever the next character is still part of "a+b=", so that only the answer is learned."""
    x, y = problems[:, :-1], problems[:, 1:].clone()                        # (B, T) each
    # For D = 3, positions 0-11 of a problem: a a a + b b b = s s s s. The answer starts at position
    # 2D + 2 = 8, so y, one position ahead of x, has its first target at 2D + 1 = 7.
    y[:, :2 * digits + 1] = -1                                              # the problem: given, not learned
    return x.to(device), y.to(device)


@torch.no_grad()
def exact_match(model, batches, autocast):
    """The share of these problems whose whole answer the model gets right. Greedy decoding writes an
    answer right exactly when at each of its positions the likeliest character is the true one, after the
    true ones before: one pass over the true answers tells it for every problem at once."""
    model.eval()
    right = []
    for x, y in batches:
        with autocast:
            logits, _ = model(x, y)                                             # (B, T, vocab_size)
        right.append(((logits.argmax(dim=-1) == y) | (y == -1)).all(dim=1))     # (B,); -1: no target
    model.train()
    return torch.cat(right).float().mean().item()


# -----------------------------------------------------------------------------
# Machinery: one-line errors, the device and number format, the CPU recipe's fit, the data's checks

def fail(message):   # a mistake the user can fix: one line naming the fix, exit status 1, no traceback
    raise SystemExit(f"train.py: error: {message}")


def out_of_memory(error):   # CUDA's own error, or a RuntimeError of the CPU's or MPS allocator, by its words
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or any(
        words in str(error) for words in ("DefaultCPUAllocator: ", "MPS backend out of memory"))


def set_up(args):
    """-> (device, dtype, ranks), each said with why (auto: CUDA, MPS, CPU); refuses what cannot fit."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    name = next(d for d in available if available[d]) if args.device == "auto" else args.device
    if not available[name]:
        fail(f"--device {name} (or the resumed run's): this machine has no {name}; add --device cpu")
    ranks = join_torchrun(name)
    device = torch.device("cuda", ranks.local) if name == "cuda" else torch.device(name)
    dtype, why = pick_dtype(args.dtype, device)
    fitted = fit_to_machine(args, device, dtype, ranks) if args.preset == "cpu" else None
    if args.model == "gpt" and args.n_embd % args.n_head:
        fail(f"--n-embd {args.n_embd} must be a multiple of --n-head {args.n_head}")
    if args.model == "gpt" and args.rope and args.n_embd // args.n_head % 2:
        fail(f"--rope turns channels in pairs, so the head size --n-embd / --n-head must be even, got "
             f"{args.n_embd} / {args.n_head}; change either, or add --no-rope")
    if ranks.master:
        print(f"device: {device} (--device {args.device}), dtype: {str(dtype)[6:]} ({why})"
              + (f", {ranks.size} processes" if ranks.size > 1 else ""))
        print(f"model: {args.model}, recipe {args.preset}: "
              + ", ".join(f"{k}={getattr(args, k)}" for k in RECIPES[args.preset]), flush=True)
        if fitted:
            print(fitted, flush=True)
    if device.type == "cpu" and args.model == "gpt" and os.path.exists("/proc/meminfo"):
        # Out of memory, a CPU process is killed without a word: refuse a step whose activations cannot
        # fit, at least a few (B, T, C) per layer and, with the explicit attention, its (B, nh, T, T).
        with open("/proc/meminfo") as f:
            free = int(dict(line.split(":") for line in f)["MemAvailable"].split()[0]) * 1024
        weights = args.n_head * args.block_size if args.attention == "explicit" else 0
        if 4 * args.batch_size * args.block_size * args.n_layer * (8 * args.n_embd + weights) > free:
            fail(f"out of memory: a step needs more than the {free / 2**30:.1f} GiB free; lower --batch-size "
                 f"first, then --block-size or --n-embd")
    return device, dtype, ranks


def fit_to_machine(args, device, dtype, ranks):
    """Fill the cpu recipe's model and batch from CPU_FITS -> the line that says which row and why."""
    reference_ms, rows = CPU_FITS[torch.float32 if dtype == torch.float32 else torch.bfloat16]
    told = [name for name in rows[10] if getattr(args, name) is not None]   # given, resumed or carried
    if len(told) == len(rows[10]):
        return None   # nothing to fit
    if not args.time_budget or told or ranks.size > 1:   # under torchrun, every rank must take one row
        row, why = 10, "for a fixed number of steps, several processes, or some of these settings given"
    else:   # what the budget buys here, in minutes of the reference CPU; the probe's time comes out of it
        start = time.monotonic()
        ms = step_ms(rows[min(rows)], device, dtype)
        args.time_budget = round(args.time_budget - (time.monotonic() - start) / 60, 3)
        minutes = args.time_budget * reference_ms / ms
        row = min(rows, key=lambda fitted: abs(math.log(fitted / minutes)))   # the nearest, as a ratio
        why = (f"a step of the {min(rows):g}-minute row's model took {ms:.0f} ms here and {reference_ms} on "
               f"the reference CPU, so {args.time_budget:g} min here buy {minutes:.1f} there")
    for name, value in rows[row].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    settings = ", ".join(f"{name}={getattr(args, name)}" for name in rows[row])
    return f"fitted: {settings}: the {row:g}-minute row ({why})"


def step_ms(settings, device, dtype, steps=5):
    """Milliseconds of a forward and backward pass of a GPT of these settings here: the median of `steps`."""
    sizes = {name: settings[name] for name in ("block_size", "n_layer", "n_head", "n_embd", "dropout")}
    model = GPT(GPTConfig(vocab_size=65, rope=True, fused_attention=False, **sizes)).to(device)
    x = torch.randint(65, (settings["batch_size"], settings["block_size"]), device=device)   # (B, T)
    times = []
    for _ in range(steps + 1):   # the first, which sets things up, is not counted
        start = time.perf_counter()
        with torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
            _, loss = model(x, x)
        loss.backward()
        loss.item()   # waits for a GPU to finish
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times[1:])[steps // 2]


CPU_BFLOAT16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # in hardware


def pick_dtype(name, device):
    """--dtype -> (number format, why). bfloat16 keeps float32's range with fewer digits; float16 has a
    far smaller range (so the loss scaler). Weights, layer norms and the loss stay float32."""
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
    """data/train.bin and val.bin as memory maps -> (train, val, vocab.json's info); a torn set is refused."""
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
        torn = f"{data_dir}/ is torn or mismatched ({name}.bin and vocab.json differ); run: python prepare.py"
        if not os.path.isfile(path) or os.path.getsize(path) != size or len(set(chars)) != info["vocab_size"]:
            fail(torn)
        ids = np.memmap(path, dtype=dtype, mode="r")   # reads only the pages batches touch: any size of text
        if ids.max() >= len(chars):   # an id with no character (this reads the file once)
            fail(torn)
        if len(ids) <= block_size:
            fail(f"--block-size {block_size} needs more than {block_size} characters of {name} data; "
                 f"{path} has {len(ids)}: lower it or prepare a longer text")
        splits.append(ids)
    return splits[0], splits[1], info


def model_args(args, chars):   # what a checkpoint records to rebuild the model
    sizes = {k: getattr(args, k) for k in GPT_ARGS} if args.model == "gpt" else {}
    return {"model": args.model, "vocab_size": len(chars), **sizes}


def wrap_in_ddp(model, args, ranks, iter_num):
    """-> the model, or under torchrun the model in DDP, which averages the ranks' gradients."""
    if ranks.size == 1:
        return model
    torch.manual_seed(args.seed + 1000 * ranks.rank + iter_num)   # from here on, each rank its own batches
    return torch.nn.parallel.DistributedDataParallel(model)


# -----------------------------------------------------------------------------
# The run's files in --out-dir, each replaced whole or not at all: ckpt.pt, the best evaluation's
# weights (what generate.py samples); last.pt, the state --resume continues from; log.csv.

def claim_out_dir(args, saved):
    """Lock --out-dir -> the lock (None where the system has no flock). A run there is only continued
    (--resume) or replaced (--overwrite)."""
    files = [os.path.join(args.out_dir, name) for name in ("ckpt.pt", "last.pt", "log.csv")]
    if saved is None and not args.overwrite and any(map(os.path.exists, files)):
        fail(f"{args.out_dir}/ already holds a run; continue it with --resume, start over there with "
             f"--overwrite, or train in another --out-dir")
    lock = None
    try:
        os.makedirs(args.out_dir, exist_ok=True)
        import fcntl   # Linux and macOS
        lock = os.open(args.out_dir, os.O_RDONLY)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # held until closed, or the process ends
    except ImportError:   # Windows
        print(f"note: this system cannot lock {args.out_dir}/; run one train.py at a time there")
    except BlockingIOError:
        fail(f"another train.py is running in {args.out_dir}/; wait for it, or use another --out-dir")
    except OSError as e:
        fail(f"cannot write to --out-dir {args.out_dir}: {e.strerror}")
    for path in [f + ".tmp" for f in files] + (files if saved is None else []):
        if os.path.exists(path):   # left by a killed save; with --overwrite, the earlier run
            os.remove(path)
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


def save_run(args, model, optimizers, scaler, data_info, iter_num, best_val_loss, run, losses=None,
             improved=False):
    """Log the evaluation (losses); write log.csv, last.pt and, if val improved, ckpt.pt: last.pt first, so
    ckpt.pt never gets worse weights."""
    if losses is not None:
        exact = round(losses["val_exact"], 6) if args.task == "addition" else ""
        run.log.append([iter_num, round(losses["train"], 4), round(losses["val"], 4), round(run.seconds, 2),
                        exact])
    chars = "".join(data_info["chars"])
    checkpoint = {"model": model.state_dict(), "model_args": model_args(args, chars), "vocab": chars, "data":
                  data_info, "iter_num": iter_num, "best_val_loss": best_val_loss, "config": vars(args)}
    last = {**checkpoint, "optimizers": [o.state_dict() for o in optimizers], "scaler": scaler.state_dict(),
            "elapsed_s": run.seconds, "log": run.log, "rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    rows = io.StringIO()
    csv.writer(rows).writerows([["iter", "train_loss", "val_loss", "elapsed_s", "val_exact_match"]] + run.log)
    try:
        write_whole(os.path.join(args.out_dir, "log.csv"), rows.getvalue().encode())
        for name, contents in [("last.pt", last)] + [("ckpt.pt", checkpoint)] * improved:
            serialised = io.BytesIO()   # in memory first: torch.save to a file hides a full disk's cause
            torch.save(contents, serialised)
            write_whole(os.path.join(args.out_dir, name), serialised.getbuffer())
    except OSError as e:
        held = "the last whole checkpoints" if os.path.exists(f"{args.out_dir}/last.pt") else "nothing"
        fail(f"cannot write to {args.out_dir}/ ({e.strerror}); it holds {held}")


def read_run(path, keys=("optimizers", "scaler", "rng_state", "cuda_rng_state", "elapsed_s", "data")):
    """last.pt (with keys=(), any train.py checkpoint) -> its contents, read weights_only: no code runs."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail(f"no checkpoint at {path}" + ("; train afresh with: python train.py" if keys else ""))
    except pickle.UnpicklingError as e:   # weights_only refused a Python object (GLOBAL), or no pickle
        fail(f"refusing to load {path}: it holds Python objects that could run code, not just weights"
             if "GLOBAL" in str(e) else f"{path} is not a PyTorch checkpoint")
    except (RuntimeError, EOFError, IsADirectoryError) as e:
        fail(f"{path} is not a readable checkpoint ({str(e).splitlines()[0][:100]})")
    keys = ("model", "model_args", "vocab", "iter_num", "best_val_loss", "config") + keys
    missing = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        fail(f"{path} is not a checkpoint of train.py to start from (it has no {', '.join(missing)})")
    return checkpoint


def resume(args, saved, model, optimizers, scaler, data_info, device):
    """Load the saved run into the fresh model, optimisers and scaler -> (step, best val loss, seconds)."""
    last = os.path.join(args.out_dir, "last.pt")
    if saved["model_args"] != model_args(args, saved["vocab"]) or len(saved["optimizers"]) != len(optimizers):
        fail(f"{last} holds another model or optimiser ({saved['model_args']}, --optimizer "
             f"{saved['config']['optimizer']}); resume without those flags, or train in another --out-dir")
    if saved["data"] != data_info:   # another text (or the same text split otherwise), or other sums
        fail(f"{last} was trained on other data than {args.data_dir}/ holds; to start from its weights "
             f"on this text: python train.py --init-from {args.out_dir}/ckpt.pt --out-dir ANOTHER_DIR")
    model.load_state_dict(saved["model"])
    for optimizer, state in zip(optimizers, saved["optimizers"]):
        optimizer.load_state_dict(state)
    scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng_state"])
    if device.type == "cuda" and saved["cuda_rng_state"] is not None:
        torch.cuda.set_rng_state(saved["cuda_rng_state"])
    if os.environ.get("RANK", "0") == "0":   # rank 0 under torchrun speaks for all
        print(f"resuming from {last} at step {saved['iter_num']}, best val loss {saved['best_val_loss']:.4f}")
    return saved["iter_num"], saved["best_val_loss"], saved["elapsed_s"]


def finish(args, model, optimizers, scaler, data_info, iter_num, best_val_loss, run, progress):
    """Say what is where; after a signal, save the state the run stopped in and exit as a signal would."""
    if run.ranks.size > 1:
        torch.distributed.barrier()   # no rank leaves while rank 0 still evaluates
        torch.distributed.destroy_process_group()
        if not run.ranks.master:
            return
    run.bar.close()
    out = args.out_dir
    best = f"best val loss {best_val_loss:.4f}: {out}/ckpt.pt, the weights generate.py samples"
    if run.signal and progress < 1:   # a signal in the last step leaves the run whole
        if iter_num % args.eval_interval:   # else this step's evaluation saved it
            save_run(args, model, optimizers, scaler, data_info, iter_num, best_val_loss, run)
        command = "python train.py --resume" + (f" --out-dir {out}" if out != "out" else "")
        print(f"interrupted at step {iter_num} ({signal.Signals(run.signal).name}); saved {out}/last.pt; "
              f"continue with: {command}\n{best}")
        raise SystemExit(128 + run.signal)   # the status a shell gives a command a signal stopped
    print(plot_log(run.log))
    print(f"{best}\nlast step {iter_num}: {out}/last.pt, the state --resume continues from; "
          f"{run.seconds:.1f} s")


# -----------------------------------------------------------------------------
# How the run goes and ends: the clock, Ctrl-C and SIGTERM, the progress bar, torchrun, the loss plot

class RunControl:
    """The run's clock, its log.csv rows and its progress bar. Inside: --out-dir locked, and Ctrl-C or SIGTERM
    (`kill`, `timeout`, schedulers) asks the run to save and stop (a second stops at once). Under torchrun,
    rank 0's clock and signal decide for every rank."""

    def __init__(self, args, ranks, saved, iter_num, elapsed):
        self.args, self.ranks = args, ranks
        self.start = time.monotonic() - elapsed   # the clock counts the runs this one resumes
        self.signal, self.seconds, self.bad_losses = 0, elapsed, 0
        self.lock = claim_out_dir(args, saved) if ranks.master else None
        # log.csv's rows: those before the resumed step (a last.pt older than this log holds none)
        self.log = [row for row in saved.get("log", []) if row[0] < iter_num] if saved else []
        self.bar = progress_bar(args, iter_num, ranks)
        self.previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.bar.close()
        if self.lock is not None:
            os.close(self.lock)

    def request_stop(self, signum, frame):
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signum

    def rank0s(self, value):
        """Under torchrun, rank 0's value (its clock, its Ctrl-C) on every rank: all stop and decay alike."""
        if self.ranks.size > 1:
            value = torch.tensor([value], dtype=torch.float64)
            torch.distributed.broadcast(value, src=0)
        return float(value)

    def clock(self):   # -> the run's seconds so far, rank 0's on every rank
        self.seconds = self.rank0s(time.monotonic() - self.start)
        return self.seconds

    def interrupted(self):   # Ctrl-C or SIGTERM (on rank 0)
        self.signal = int(self.rank0s(self.signal))
        return self.signal != 0

    def stepped(self, iter_num, loss_value, lr, scaler):
        """Move the bar; stop a loss gone inf or NaN. In float16 one overflowing batch is only a step the
        scaler skipped: there a loss that stays so for 20 steps has diverged."""
        self.bad_losses = 0 if math.isfinite(loss_value) else self.bad_losses + 1
        if self.bad_losses >= (20 if scaler.is_enabled() else 1):
            fail(f"the loss became {loss_value} at step {iter_num - 1}; stopped. {self.args.out_dir}/ckpt.pt "
                 f"keeps the best weights and last.pt the last good state; try a lower --learning-rate")
        self.bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}", refresh=False)
        self.bar.update()


def join_torchrun(device_name):
    """Under `torchrun --nproc_per_node N train.py`: one of N ranks; rank 0 alone evaluates and writes."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if os.environ.get("WORLD_SIZE", "1") == "1":
        return argparse.Namespace(size=1, rank=0, local=0, master=True)
    if not all(os.environ.get(n) for n in names) or not all(os.environ[n].isdigit() for n in names[:3]):
        fail(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set, but not all of {', '.join(names[1:])} (whole "
             f"numbers, an address, a port): start the processes with torchrun, or unset WORLD_SIZE")
    size, rank, local = (int(os.environ[n]) for n in names[:3])
    if device_name == "cuda":
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend="nccl" if device_name == "cuda" else "gloo")
    return argparse.Namespace(size=size, rank=rank, local=local, master=rank == 0)


def progress_bar(args, iter_num, ranks):
    """A live bar in a terminal (none when the output goes to a file); with a time budget it counts steps."""
    return tqdm(total=None if args.time_budget else args.max_iters, initial=iter_num, desc="training",
                unit="it", dynamic_ncols=True, disable=None if ranks.master else True)


def plot_log(rows, width=60):
    """log.csv's rows -> a line per evaluation, train (.) and val (o) on one scale; o parting: overfitting."""
    scale = rows[1:] if len(rows) > 2 else rows   # the first loss, ~ln(vocab_size), would squash the rest
    low, high = min(min(r[1:3]) for r in scale), max(max(r[1:3]) for r in scale)
    lines = [f"{'step':>8}  {'train':>7}  {'val':>7}  {low:<{width // 2}.3f}{high:>{width - width // 2}.3f}"]
    for step, train_loss, val_loss, *_ in rows:
        bar = [" "] * (width + 1)
        for loss, mark in ((train_loss, "."), (val_loss, "o")):
            bar[min(width, round((loss - low) / max(high - low, 1e-9) * width))] = mark
        lines.append(f"{step:>8}  {train_loss:7.4f}  {val_loss:7.4f}  |{''.join(bar)}|")
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# The command line

def number(kind, zero_allowed=False, below=None):
    """An argparse type: a finite number of this kind, > 0 (>= 0 with zero_allowed), below `below`."""
    below = below or (2**31 if kind is int else math.inf)

    def parse(text):
        value = kind(text)   # not a number: argparse says "invalid int value"
        if not (0 <= value < below and math.isfinite(value)) or value == 0 and not zero_allowed:
            raise argparse.ArgumentTypeError(f"must be {'at least 0' if zero_allowed else 'above 0'} and "
                                             f"below {below:g}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


# Every setting of a run: its flag's type (or choices), its help, and its default (None: none of its own).
SETTINGS = {
    "model": (["gpt", "bigram"], "what to train", "gpt"),
    "preset": (["lecture", "cpu", "addition"], "the GPT's recipe: the lecture's, 9.5 min on a CPU (its model "
               "and batch fitted to the machine's speed: CPU_FITS), or a small adder (default: addition for "
               "--task addition, lecture on CUDA, else cpu)", None),
    "task": (["text", "addition"], "learn the prepared text, or to add: a+b= and the sum, each number units "
             "first (54+9 in 3 digits: 450+900=3600)", "text"),
    "digits": (number(int, below=100), "with --task addition: digits per number (above 4, LONG_SUMS changes "
               "the recipe)", 3),
    "batch_size": (number(int), "independent sequences per step (B)", None),
    "block_size": (number(int), "context length in characters (T)", None),
    "n_layer": (number(int), "Transformer blocks", None),
    "n_head": (number(int), "attention heads per block (must divide --n-embd)", None),
    "n_embd": (number(int), "channels per position (C)", None),
    "dropout": (number(float, zero_allowed=True, below=1), "dropout probability", None),
    "rope": (bool, "rotary position embeddings (Su et al., 2021) instead of the position table", False),
    "tie_weights": (bool, "the output head shares the token embedding's matrix (Press & Wolf, 2017)", False),
    "activation": (["relu", "gelu", "relu2"], "the feed-forward's non-linearity (relu2: ReLU squared, So "
                   "et al., 2021)", "relu"),
    "qk_norm": (bool, "queries and keys to unit RMS before they meet (Henry et al., 2020)", False),
    "max_iters": (number(int), "training steps; given, they replace the recipe's time budget (under which "
                  "the recipe's max_iters is only the schedule's length)", None),
    "time_budget": (number(float), "train this many minutes (resumes count) instead of --max-iters steps; "
                    "the schedule, drawn for --max-iters steps, follows the time used", None),
    "eval_interval": (number(int), "evaluate, log and save every this many steps", None),
    "eval_iters": (number(int), "batches per split in each evaluation (addition's val: all)", None),
    "learning_rate": (number(float), "peak learning rate", None),
    "min_lr": (number(float, zero_allowed=True), "learning rate at the end of the decay", None),
    "warmup_iters": (number(int, zero_allowed=True), "steps of linear warmup (with a time budget, steps of "
                     "the schedule drawn for --max-iters steps)", None),
    "weight_decay": (number(float, zero_allowed=True), "weight decay on matrices", None),
    "grad_clip": (number(float, zero_allowed=True), "clip the gradient's norm to this (0: off)", None),
    "optimizer": (["adamw", "muon"], "muon: Muon for the blocks' matrices, AdamW elsewhere", "adamw"),
    "attention": (["fused", "explicit"], "one fused PyTorch call, or the explicit math", "fused"),
    "device": (["auto", "cpu", "cuda", "mps"], "where to train", "auto"),
    "dtype": (["auto", "float32", "bfloat16", "float16"], "number format of the matrix multiplies (auto: "
              "bfloat16 where the hardware has it, float16 on older GPUs and Apple's)", "auto"),
    "seed": (number(int, zero_allowed=True, below=2**63), "random seed", 1337),
    "data_dir": (str, "where prepare.py wrote its files", "data"),
}
# The recipes: the settings that have no default of their own, for each kind of run.
RECIPES = {
    # The lecture's bigram.py: a constant learning rate is all a lookup table needs.
    "bigram": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=200,
                   learning_rate=1e-2, min_lr=1e-2, warmup_iters=0, weight_decay=0.0, grad_clip=0.0),
    # The lecture's model and batch (B 64, T 256) for its 5,000 steps, at nanoGPT's settings for it
    # (the lecture: a constant 3e-4): a peak of 1e-3, cosine decay to 1e-4, weight decay 0.1, clip 1.
    "lecture": dict(**PRESETS["lecture"], batch_size=64, max_iters=5000, eval_interval=500,
                    eval_iters=200, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.1,
                    grad_clip=1.0, optimizer="adamw", attention="fused"),
    # What full runs found best on 2 CPU cores: RoPE, Muon, and a model and batch fitted to the machine's
    # speed (CPU_FITS). It trains 9.5 minutes, whatever a step costs (max_iters only draws the schedule).
    "cpu": dict(rope=True, max_iters=1100, eval_iters=20, warmup_iters=100, weight_decay=0.1, grad_clip=1.0,
                optimizer="muon", time_budget=9.5, attention="explicit"),
    # --task addition: a small GPT, over a problem less its last character (block_size 3 * digits + 2).
    "addition": dict(n_layer=2, n_head=4, n_embd=128, dropout=0.0, rope=False, batch_size=64, max_iters=2000,
                     eval_interval=250, eval_iters=10, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                     weight_decay=0.1, grad_clip=1.0),
}
# The addition recipe for sums of more than 4 digits: RoPE (why: exercise 2's comment), a higher rate, more
# steps. Up to 4 digits, the position table learns its few places sooner (tests/MEASUREMENTS.md).
LONG_SUMS = dict(rope=True, learning_rate=3e-3, min_lr=3e-4, max_iters=3000)

# The cpu recipe's model, batch and rates that full runs found best for the minutes a run has on the
# reference CPU, a 2-core AMD EPYC with AVX512-BF16 (for float32, with it hidden; tests/MEASUREMENTS.md).
# A machine k times slower, given T minutes, does what the reference does in T / k: fit_to_machine times a
# step (step_ms) to find k. Per number format: (the reference's ms, {minutes there: settings}).
CPU_MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, learning_rate=3e-3, min_lr=3e-4)
CPU_FITS = {
    torch.bfloat16: (73, {1.5: dict(CPU_MODEL, batch_size=48, eval_interval=500),
                          10: dict(CPU_MODEL, batch_size=16, eval_interval=1000)}),
    torch.float32: (86, {1.5: dict(CPU_MODEL, batch_size=32, eval_interval=500),
                         10: dict(CPU_MODEL, batch_size=16, eval_interval=1000)}),
}


def parse_args(argv=None):
    """Flags -> (args with every setting filled in, the saved run to resume, the checkpoint to start from);
    the cpu recipe's model and batch are fitted to the machine when the run starts (fit_to_machine)."""
    parser = argparse.ArgumentParser(description=(
        "Train a character-level language model on the text prepare.py prepared; writes ckpt.pt, last.pt "
        "and log.csv to --out-dir. A setting not given is the resumed run's, the --init-from checkpoint's, "
        "the recipe's (--preset) or the default shown, the first that has it."))
    parser.error = lambda message: fail(f"{message} (see --help)")
    for name, (kind, help, default) in SETTINGS.items():
        how = (dict(action=argparse.BooleanOptionalAction) if kind is bool else dict(choices=kind)
               if isinstance(kind, list) else dict(type=kind))
        recipes = ", ".join(f"{recipe} {values[name]}" for recipe, values in RECIPES.items()
                            if values.get(name) is not None)   # a recipe's value comes before the default
        shown = [f"the recipe's ({recipes})"] if recipes else []
        shown += [] if default is None else [str(default)]
        help += f" (default: {', else '.join(shown)})" if shown else ""
        parser.add_argument("--" + name.replace("_", "-"), **how, help=help)
    parser.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights and sizes, "
                        "with a fresh optimiser, schedule, step and log: fine-tune a model on your text")
    parser.add_argument("--out-dir", default="out", help="where ckpt.pt, last.pt, log.csv go (default: out)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out-dir/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start afresh in an --out-dir with a run")
    args = parser.parse_args(argv)
    given = {name: value for name, value in vars(args).items() if value is not None}
    if args.resume and args.init_from:
        fail("--resume continues a run, --init-from starts a new one from a checkpoint: give one")
    # A setting is, first found: its flag, the resumed run's, the checkpoint's, the recipe's, its default.
    saved = read_run(os.path.join(args.out_dir, "last.pt")) if args.resume else None
    init = read_run(args.init_from, keys=()) if args.init_from else None
    inherited = saved["config"] if saved else {}
    if init:   # the model, sizes and task its weights fit (a checkpoint older than the papers' changes: none)
        inherited = {**{name: SETTINGS[name][2] for name in GPT_ARGS[5:]}, **init["model_args"],
                     **{name: init["config"][name] for name in ("task", "digits") if name in init["config"]}}
        for name, value in inherited.items():   # dropout alone may change
            if name in given and name != "dropout" and given[name] != value:
                fail(f"--{name.replace('_', '-')} {given[name]}: {args.init_from} has {value}")
    known = {**inherited, **given}
    model, task = known.get("model", "gpt"), known.get("task", "text")
    if saved and model != saved["config"]["model"]:
        fail(f"{args.out_dir}/last.pt holds a {saved['config']['model']} run; resume it without --model")
    gpt_only = sorted(given.keys() & {"preset", "task", "digits", "optimizer", "attention", *GPT_ARGS[1:]})
    if model == "bigram" and gpt_only:
        fail(f"--{gpt_only[0].replace('_', '-')} is a GPT setting; the bigram has no such setting")
    if {"max_iters", "time_budget"} <= given.keys():
        fail("--max-iters and --time-budget both given; a run ends by one of them: give one")
    if "digits" in given and task != "addition" or "block_size" in given and task == "addition":
        fail("--digits is for --task addition, and there it sets the block size: 3 * digits + 2")
    preset = known.get("preset")
    if preset is None or "bigram" in (model, preset):   # none given, or another model's
        gpu = known.get("device", "auto") in ("auto", "cuda") and torch.cuda.is_available()
        preset = ("bigram" if model == "bigram" else "addition" if task == "addition"
                  else "lecture" if gpu else "cpu")
    defaults = {name: default for name, (_, _, default) in SETTINGS.items()}
    long_sums = LONG_SUMS if preset == "addition" and known.get("digits", defaults["digits"]) > 4 else {}
    vars(args).update({**defaults, **RECIPES[preset], **long_sums, **known, "preset": preset})
    if "max_iters" in given:   # a fixed number of steps: the same run on every machine
        args.time_budget = None
    if args.task == "addition":   # block_size: "a+b=" and the sum, less its last digit (never an input)
        args.block_size = 3 * args.digits + 2
    return args, saved, init


def main(argv=None):
    args, saved, init = parse_args(argv)
    try:
        train(args, saved, init)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise   # a bug: Python's own traceback
        fail("out of memory: lower --batch-size first, then --block-size or --n-embd")
    except KeyboardInterrupt:   # a second Ctrl-C: stop at once
        raise SystemExit(f"train.py: interrupted; {args.out_dir}/ holds the last checkpoints saved whole")


if __name__ == "__main__":
    main()
