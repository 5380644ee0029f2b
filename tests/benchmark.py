"""
Benchmarks behind the figures in tests/MEASUREMENTS.md, where each result is written down with its
date, machine and command. Not a test (pytest does not collect it); run it by hand, on the CPU, with
nothing else running:

    python tests/benchmark.py speed                 # lecture sizes: 8 steps, ours vs the plain lecture code
    python tests/benchmark.py speed --config cpu    # the CPU recipe's sizes
    python tests/benchmark.py quality -- --no-rope  # python train.py [flags] as a user would: val loss, time
    python tests/benchmark.py generate              # sampling out/ckpt.pt with and without the KV cache
    python tests/benchmark.py prepare               # prepare.py on a 1 GB text: MB/s, peak memory
    python tests/benchmark.py addition              # which digit a GPT learns first; each idea taken out

Timings on shared machines vary from run to run, so speed and generate repeat their work, let the
variants they compare take turns, and report medians.

speed: training steps at a recipe's sizes (--config lecture or cpu), each variant its own process:
the plain code (tests/lecture_gpt.py: a module per head, float32, constant-rate AdamW) and gpt.py's
GPT with the recipe's optimisers, once per --attention path, in --dtype's format. Reported: medians
over --rounds of the whole process and of a step (the first step left out), tokens per second, and
the plain code's time over each variant's.
quality: train.py with the flags after --, --runs times in a temporary --out-dir; with --baseline,
after each, nanoGPT's CPU recipe (BASELINE) for the same --time-budget. Each ckpt.pt is scored on the
whole validation split (every position once, in windows of its block_size, float32); then the medians.
generate: a checkpoint loaded as generate.py loads it (float32, batch 1): characters per second over
the first block_size characters, where the cache works (median of --window-rounds), and over
--tokens characters; the time to the first character.
prepare: prepare.py as its own process on tiny Shakespeare repeated to --size-mb MB, the text
written just before so that it sits in the page cache: time, MB/s, peak memory.
addition: train.py's addition recipe in float32 for --steps steps: as train.py lays the problems out
(every number least significant digit first) with RoPE; then with a and b the usual way round; then
with the position table instead of RoPE; each from the same seed. Every --every steps: each answer
digit's held-out accuracy and the exact match (what greedy sampling writes).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = ("lecture", "cpu")   # train.py's GPT recipes


def recipe(config):
    """train.py's settings for a GPT recipe; for cpu, its 10-minute row in bfloat16."""
    sys.path.insert(0, str(ROOT))
    import torch
    import train
    return {**train.RECIPES[config], **(train.CPU_FITS[torch.bfloat16][1][10] if config == "cpu" else {})}


def run_steps(impl, config, iters, attention, dtype):
    """In this process: build the model and optimizer, take `iters` steps; print per-step seconds as JSON."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import torch
    import train
    from gpt import GPT, GPTConfig
    from lecture_gpt import LectureGPT

    c = recipe(config)
    torch.manual_seed(0)
    data = np.random.default_rng(0).integers(0, 65, size=1_000_000, dtype=np.uint8)
    device = torch.device("cpu")
    if impl == "plain":  # the lecture's code as it is: per-head modules, float32, constant-lr AdamW
        model = LectureGPT(65, c["block_size"], c["n_layer"], c["n_head"], c["n_embd"], c["dropout"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        use_bf16 = False
    else:  # what train.py does, with the recipe's optimisers
        model = GPT(GPTConfig(vocab_size=65, fused_attention=(attention == "fused"),
                              **{k: c[k] for k in train.GPT_ARGS if k in c}))
        use_bf16 = train.pick_dtype(dtype, device)[0] == torch.bfloat16
        optimizers = train.configure_optimizers(model, c["optimizer"], c["learning_rate"], c["weight_decay"],
                                                torch.bfloat16 if use_bf16 else torch.float32)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        x, y = train.get_batch(data, c["batch_size"], c["block_size"], device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            _, loss = model(x, y)
        if impl == "plain":
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for o in optimizers:
                o.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times, "bf16": use_bf16, "threads": torch.get_num_threads()}))


def speed(args):
    variants = [("plain", "explicit", "float32")] + [("ours", attention, args.dtype)
                                                     for attention in args.attention]
    results = {v: {"process_s": [], "step_s": []} for v in variants}
    sys.path.insert(0, str(ROOT))
    c = recipe(args.config)
    print(f"config {args.config}: {c}, {args.iters} steps per process, {args.rounds} rounds")
    for r in range(args.rounds):
        for v in variants:
            impl, attention, dtype = v
            command = [sys.executable, __file__, "_steps", "--impl", impl, "--config", args.config,
                       "--iters", str(args.iters), "--attention", attention, "--dtype", dtype]
            start = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            elapsed = time.perf_counter() - start
            report = json.loads(out.stdout.strip().splitlines()[-1])
            results[v]["process_s"].append(elapsed)
            results[v]["step_s"].append(statistics.median(report["step_s"][1:]))
            print(f"  round {r + 1}: {impl:5s} {attention:6s} {'bf16' if report['bf16'] else 'fp32'}: "
                  f"{elapsed:6.1f} s whole process, {results[v]['step_s'][-1] * 1000:7.0f} ms/step",
                  flush=True)

    tokens = c["batch_size"] * c["block_size"]
    base = statistics.median(results[variants[0]]["process_s"])
    print(f"\n| variant | whole process, {args.iters} steps (median s) | ms/iter | tokens/s | "
          "speed-up vs plain |")
    print("|---|---|---|---|---|")
    for v in variants:
        process_s = statistics.median(results[v]["process_s"])
        step_s = statistics.median(results[v]["step_s"])
        name = "plain lecture code, float32" if v[0] == "plain" else f"gpt.py, {v[1]} attention, dtype {v[2]}"
        print(f"| {name} | {process_s:.1f} | {step_s * 1000:.0f} | {tokens / step_s:,.0f} | "
              f"{base / process_s:.2f}x |")


# nanoGPT's CPU command ("I only have a macbook") in train.py's flags: 4 layers of 128, 4 heads, block 64,
# batch 12, no dropout, AdamW in float32, 1e-3 cosine to 1e-4 after 100 warmup steps, decay 0.1, clip 1.
BASELINE = ("--n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12 --dropout 0 --no-rope "
            "--optimizer adamw --dtype float32 --attention fused --learning-rate 1e-3 --min-lr 1e-4 "
            "--warmup-iters 100 --weight-decay 0.1 --grad-clip 1 --eval-interval 250 --eval-iters 20").split()


def whole_val_loss(checkpoint, data_dir):
    """A checkpoint's mean loss over the whole validation split, every position once, in windows of its
    block_size, float32: unlike the minimum of noisy estimates, not biased low."""
    import numpy as np
    import torch
    sys.path.insert(0, str(ROOT))
    import generate
    model, *_ = generate.load_model(checkpoint, torch.device("cpu"))
    with open(os.path.join(data_dir, "vocab.json")) as f:
        dtype = json.load(f)["dtype"]
    val = torch.from_numpy(np.fromfile(os.path.join(data_dir, "val.bin"), dtype=dtype).astype(np.int64))
    T = getattr(model, "block_size", 256)
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(val) - 1, 64 * T):   # 64 windows at a time
            chunk = val[start:start + 64 * T + 1]
            n = (len(chunk) - 1) // T * T   # whole windows; the last, shorter window on its own below
            pieces = [(chunk[:n].view(-1, T), chunk[1:n + 1].view(-1, T))] if n else []
            pieces += [(chunk[n:-1][None], chunk[n + 1:][None])] if len(chunk) - 1 > n else []
            for x, y in pieces:
                logits, _ = model(x)
                total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                                           reduction="sum").item()
                count += y.numel()
    return total / count


def quality(args):
    """Run train.py as a user would, --runs times (with --baseline, nanoGPT's CPU recipe for the same
    minutes after each); report each run's val loss on the whole split, steps and time, and the medians."""
    flags = args.train_args
    minutes = flags[flags.index("--time-budget") + 1] if "--time-budget" in flags else "9.5"
    data_dir = flags[flags.index("--data-dir") + 1] if "--data-dir" in flags else str(ROOT / "data")
    variants = [("recipe", flags)] + [("baseline", BASELINE + ["--time-budget", minutes,
                                                                "--data-dir", data_dir])] * args.baseline
    results = {name: [] for name, _ in variants}
    for run in range(args.runs):
        for name, train_args in variants:   # the variants take turns
            with tempfile.TemporaryDirectory() as out_dir:
                command = [sys.executable, str(ROOT / "train.py"), "--out-dir", out_dir, *train_args]
                print(f"{name}, run {run + 1} of {args.runs}:", " ".join(command[1:]), flush=True)
                start = time.perf_counter()
                result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
                elapsed = time.perf_counter() - start
                print(result.stdout)
                if result.returncode != 0:
                    sys.exit(f"train.py failed with exit status {result.returncode}")
                with open(os.path.join(out_dir, "log.csv")) as f:
                    rows = [line.strip().split(",") for line in f.readlines()[1:]]
                whole = whole_val_loss(os.path.join(out_dir, "ckpt.pt"), data_dir)
            steps, best = int(rows[-1][0]), min(float(r[2]) for r in rows)
            results[name].append((whole, best, elapsed))
            print(f"{name}, run {run + 1}: whole process {elapsed:.0f} s, {steps} steps; val loss on "
                  f"the whole split {whole:.4f} (its own estimate {best:.4f})", flush=True)
    for name, rows in results.items():
        whole, seconds = (statistics.median(r[i] for r in rows) for i in (0, 2))
        print(f"{name}: median of {args.runs} run(s): whole-split val loss {whole:.4f}, "
              f"whole process {seconds:.0f} s")


def addition(args):
    """Train the addition recipe as train.py does, then with either idea taken out (the operands written
    the usual way round, or the position table instead of RoPE); print each digit's held-out accuracy."""
    import torch
    sys.path.insert(0, str(ROOT))
    import train
    from gpt import GPT, GPTConfig
    recipe, D = train.RECIPES["addition"], args.digits
    held_out = train.addition_problems(min(10_000, 10 ** (2 * D) // 10), D, torch.Generator().manual_seed(0))
    held_out = held_out.unique(dim=0)   # as train.py holds them out
    print("| variant | step | seconds | " + " | ".join(f"digit {10 ** i:,}" for i in range(D + 1))
          + " | exact |")
    print("|---" * (D + 5) + "|")
    for variant, usual_order, rope in [("train.py's", False, True), ("operands usual way", True, True),
                                       ("position table", False, False)]:
        def arrange(problems):   # train.py's problems; or with a and b most significant digit first
            if not usual_order:
                return problems
            a, b = problems[:, :D].flip(1), problems[:, D + 1:2 * D + 1].flip(1)
            return torch.cat([a, problems[:, D:D + 1], b, problems[:, 2 * D + 1:]], dim=1)
        torch.manual_seed(args.seed)
        model = GPT(GPTConfig(12, 3 * D + 2, recipe["n_layer"], recipe["n_head"], recipe["n_embd"],
                              recipe["dropout"], rope=rope, fused_attention=False))
        [optimizer] = train.configure_optimizers(model, "adamw", recipe["learning_rate"],
                                                 recipe["weight_decay"])
        x_val, y_val = train.addition_batch(arrange(held_out), D, "cpu")
        held_out_set = set(map(tuple, arrange(held_out).tolist()))
        start = time.perf_counter()
        for step in range(args.steps + 1):
            if step % args.every == 0:
                model.eval()
                with torch.no_grad():
                    logits, _ = model(x_val)
                right = logits.argmax(-1)[:, 2 * D + 1:] == y_val[:, 2 * D + 1:]   # (N, D + 1), units first
                print(f"| {variant} | {step} | {time.perf_counter() - start:.0f} | "
                      + " | ".join(f"{a:.1%}" for a in right.float().mean(0).tolist())
                      + f" | {right.all(1).float().mean().item():.2%} |", flush=True)
                model.train()
            if step == args.steps:
                break
            lr = train.get_lr(step, recipe["learning_rate"], recipe["min_lr"], recipe["warmup_iters"],
                              args.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            problems = arrange(train.addition_problems(recipe["batch_size"], D))
            problems = problems[[tuple(p) not in held_out_set
                                 for p in problems.tolist()]]   # never a test one
            _, loss = model(*train.addition_batch(problems, D, "cpu"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
            optimizer.step()


def prepare_speed(args):
    """prepare.py on a large text (tiny Shakespeare repeated to --size-mb): MB/s and peak memory."""
    import resource
    source = Path(args.text)
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.txt"
        chunk = source.read_bytes()
        with open(big, "wb") as f:
            for _ in range(max(1, round(args.size_mb * 1e6 / len(chunk)))):
                f.write(chunk)
        size_mb = big.stat().st_size / 1e6
        command = [sys.executable, str(ROOT / "prepare.py"), "--input", str(big),
                   "--data-dir", str(Path(folder) / "data")]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
        if result.returncode != 0:
            sys.exit(result.stderr)
    print(result.stdout)
    print(f"| text | whole process | throughput | peak resident memory |")
    print(f"|---|---|---|---|")
    print(f"| {size_mb:,.0f} MB | {elapsed:.1f} s | {size_mb / elapsed:,.0f} MB/s | {peak_mb:,.0f} MB |")


def generation(args):
    """Characters per second with and without the KV cache, and the time to the first character.

    Two measurements. (1) The speed-up over the first block_size characters, where the cache
    works. That window takes well under a second, and a burst of load from a neighbour on a
    shared machine swung one timed window by 2x. So we time --window-rounds rounds of a window with
    and a window without the cache, and take each character's time as the median over the rounds.
    (2) --tokens characters with each path, --rounds times, for the rates past the window and the
    first character.
    """
    sys.path.insert(0, str(ROOT))
    import torch
    import generate
    model, *_ = generate.load_model(args.checkpoint, torch.device("cpu"))   # as generate.py loads it
    block_size = model.config.block_size
    print(f"{args.checkpoint}: {model.config}, {torch.get_num_threads()} threads, float32, batch 1")

    def time_characters(kv_cache, n):
        """Seconds from the start to each of n sampled characters, from a newline."""
        idx = torch.zeros((1, 1), dtype=torch.long)
        torch.manual_seed(0)
        stamps, start = [], time.perf_counter()
        for _ in generate.sample(model, idx, n, kv_cache=kv_cache):
            stamps.append(time.perf_counter() - start)
        return stamps

    # The window: --window-rounds rounds, each a window with the cache then one without, so that a
    # burst of load from a neighbour hits both paths alike; per position, the median over the rounds.
    # (Taking turns character by character would be fairer still to the clock, but a user runs one
    # path at a time; that way the cached characters measured slower, likely because the uncached
    # pass over a long window pushes the weights out of the core's own cache in between.)
    window = min(block_size, args.tokens)
    steps = {True: [], False: []}   # per round: seconds for each of characters 2..window
    for _ in range(args.window_rounds):
        for kv_cache in (True, False):
            stamps = time_characters(kv_cache, window)
            # from the second character on: the first is the same single-position pass on both paths
            steps[kv_cache].append([later - earlier for earlier, later in zip(stamps, stamps[1:])])
    seconds = {kv_cache: sum(statistics.median(at_position) for at_position in zip(*rounds))
               for kv_cache, rounds in steps.items()}
    ratios = [sum(uncached) / sum(cached) for cached, uncached in zip(steps[True], steps[False])]
    print(f"\nfirst {window} characters, median of {args.window_rounds} rounds per character: "
          f"KV cache {(window - 1) / seconds[True]:,.0f} chars/s, "
          f"no cache {(window - 1) / seconds[False]:,.0f} chars/s; "
          f"speed-up {seconds[False] / seconds[True]:.2f}x "
          f"(single rounds: lowest {min(ratios):.2f}x, highest {max(ratios):.2f}x)")

    results = {True: [], False: []}
    for _ in range(args.rounds):
        for kv_cache in (True, False):
            results[kv_cache].append(time_characters(kv_cache, args.tokens))
    print(f"\n{args.tokens} characters, {args.rounds} rounds:")
    print("| path | first character (ms) | chars/s, all |")
    print("|---|---|---|")
    for kv_cache in (False, True):
        first_ms = statistics.median(s[0] for s in results[kv_cache]) * 1000
        rate = statistics.median((args.tokens - 1) / (s[-1] - s[0]) for s in results[kv_cache])
        print(f"| {'KV cache' if kv_cache else 'no cache (lecture)'} | {first_ms:.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed", help="time training steps, ours against the plain lecture code")
    p.add_argument("--config", choices=CONFIGS, default="lecture")
    p.add_argument("--iters", type=int, default=8, help="training steps per process (default: 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default: 3)")
    p.add_argument("--attention", nargs="+", choices=["fused", "explicit"], default=["explicit", "fused"])
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    q = sub.add_parser("quality", help="run train.py and report the validation loss it reaches")
    q.add_argument("--baseline", action="store_true", help="also nanoGPT's CPU recipe for the same minutes")
    q.add_argument("--runs", type=int, default=2, help="full runs, one after another (default: 2)")
    q.add_argument("train_args", nargs="*", help="flags for train.py after --, e.g. -- --preset cpu")
    g = sub.add_parser("generate", help="characters per second with and without the KV cache")
    g.add_argument("--checkpoint", default=str(ROOT / "out" / "ckpt.pt"))
    g.add_argument("--tokens", type=int, default=1000, help="new characters per sample (default: 1000)")
    g.add_argument("--rounds", type=int, default=3, help="runs of --tokens characters per path (default: 3)")
    g.add_argument("--window-rounds", type=int, default=20,
                   help="rounds of block_size characters per path for the speed-up (default: 20)")
    r = sub.add_parser("prepare", help="prepare.py on a large text: MB/s and peak memory")
    r.add_argument("--size-mb", type=float, default=1000, help="size of the text to build (default: 1000)")
    r.add_argument("--text", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"),
                   help="text to repeat up to --size-mb (default: tiny Shakespeare in ../shared)")
    a = sub.add_parser("addition", help="which digit is learned first; train.py's layout, with each idea out")
    a.add_argument("--digits", type=int, default=3, help="digits per number (default: 3)")
    a.add_argument("--steps", type=int, default=2000, help="training steps per order (default: 2000)")
    a.add_argument("--every", type=int, default=100, help="evaluate every this many steps (default: 100)")
    a.add_argument("--seed", type=int, default=1337, help="the first weights and batches (default: 1337)")
    s = sub.add_parser("_steps")  # one timed process of `speed`
    s.add_argument("--impl", choices=["plain", "ours"])
    s.add_argument("--config", choices=CONFIGS)
    s.add_argument("--iters", type=int)
    s.add_argument("--attention", choices=["fused", "explicit"])
    s.add_argument("--dtype", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    if args.command == "speed":
        speed(args)
    elif args.command == "quality":
        quality(args)
    elif args.command == "generate":
        generation(args)
    elif args.command == "prepare":
        prepare_speed(args)
    elif args.command == "addition":
        addition(args)
    else:
        run_steps(args.impl, args.config, args.iters, args.attention, args.dtype)
