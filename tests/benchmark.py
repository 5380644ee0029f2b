"""
Benchmarks behind the README's figures. Not a test (pytest does not collect it); run it by hand:

    python tests/benchmark.py speed                # lecture config: 8 training steps, ours vs the plain lecture code
    python tests/benchmark.py speed --config cpu   # the same at the CPU recipe's sizes
    python tests/benchmark.py quality              # python train.py as a user runs it: best val loss and time

speed: each variant runs as its own process (python start-up, imports, model build and all),
R rounds interleaved so that a noisy machine hurts every variant alike; we report medians of the
whole-process time, of the per-step time (first step excluded) and the ratio against the plain
lecture-style float32 code measured in the same run.
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

CONFIGS = {  # the model and batch sizes, as in train.py's recipes
    "lecture": dict(batch_size=64, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
    "cpu": dict(batch_size=32, block_size=128, n_layer=4, n_head=4, n_embd=256, dropout=0.0),
}


def run_steps(impl, config, iters, attention, dtype):
    """In this process: build the model and optimizer, take `iters` steps; print per-step seconds as JSON."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import torch
    import train
    from gpt import GPT, GPTConfig
    from lecture_gpt import GPTLanguageModel

    c = CONFIGS[config]
    torch.manual_seed(0)
    data = np.random.default_rng(0).integers(0, 65, size=1_000_000, dtype=np.uint8)
    device = torch.device("cpu")
    if impl == "plain":  # the lecture's code as it is: per-head modules, float32, constant-lr AdamW
        model = GPTLanguageModel(65, c["block_size"], c["n_layer"], c["n_head"], c["n_embd"], c["dropout"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        use_bf16 = False
    else:  # what train.py does
        train.keep_freed_memory_on_linux()
        model = GPT(GPTConfig(vocab_size=65, fused_attention=(attention == "fused"),
                              **{k: c[k] for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout")}))
        optimizer = train.configure_optimizer(model, 1e-3, 0.1)
        use_bf16 = train.pick_dtype(dtype, device)[0] == torch.bfloat16
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        x, y = train.get_batch(data, c["batch_size"], c["block_size"], device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if impl != "plain":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times, "bf16": use_bf16, "threads": torch.get_num_threads()}))


def speed(args):
    variants = [("plain", "manual", "float32")] + [("ours", attention, args.dtype) for attention in args.attention]
    results = {v: {"process_s": [], "step_s": []} for v in variants}
    c = CONFIGS[args.config]
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
                  f"{elapsed:6.1f} s whole process, {results[v]['step_s'][-1] * 1000:7.0f} ms/step", flush=True)

    tokens = c["batch_size"] * c["block_size"]
    base = statistics.median(results[variants[0]]["process_s"])
    print(f"\n| variant | whole process, {args.iters} steps (median s) | ms/iter | tokens/s | speed-up vs plain |")
    print("|---|---|---|---|---|")
    for v in variants:
        process_s = statistics.median(results[v]["process_s"])
        step_s = statistics.median(results[v]["step_s"])
        name = "plain lecture code, float32" if v[0] == "plain" else f"gpt.py, {v[1]} attention, dtype {v[2]}"
        print(f"| {name} | {process_s:.1f} | {step_s * 1000:.0f} | {tokens / step_s:,.0f} | {base / process_s:.2f}x |")


def quality(args):
    """Run train.py as a user would; report the best val loss, the time, and the loss within --minutes."""
    with tempfile.TemporaryDirectory() as out_dir:
        command = [sys.executable, str(ROOT / "train.py"), "--out-dir", out_dir, *args.train_args]
        print("running:", " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        print(result.stdout)
        if result.returncode != 0:
            sys.exit(f"train.py failed with exit status {result.returncode}")
        with open(os.path.join(out_dir, "log.csv")) as f:
            rows = [line.strip().split(",") for line in f.readlines()[1:]]
    best = min(float(r[2]) for r in rows)
    within = [float(r[2]) for r in rows if float(r[3]) <= args.minutes * 60]
    print(f"whole process {elapsed:.0f} s; best val loss {best:.4f}; "
          f"best val loss within {args.minutes:g} minutes of training: {min(within) if within else float('nan'):.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed", help="time training steps, ours against the plain lecture code")
    p.add_argument("--config", choices=sorted(CONFIGS), default="lecture")
    p.add_argument("--iters", type=int, default=8, help="training steps per process (default: 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default: 3)")
    p.add_argument("--attention", nargs="+", choices=["fused", "manual"], default=["manual", "fused"])
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    q = sub.add_parser("quality", help="run train.py and report the validation loss it reaches")
    q.add_argument("--minutes", type=float, default=10.0, help="also report the best val loss within this time")
    q.add_argument("train_args", nargs="*", help="flags for train.py after --, e.g. -- --preset cpu")
    s = sub.add_parser("_steps")  # one timed process of `speed`
    s.add_argument("--impl", choices=["plain", "ours"])
    s.add_argument("--config", choices=sorted(CONFIGS))
    s.add_argument("--iters", type=int)
    s.add_argument("--attention", choices=["fused", "manual"])
    s.add_argument("--dtype", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    if args.command == "speed":
        speed(args)
    elif args.command == "quality":
        quality(args)
    else:
        run_steps(args.impl, args.config, args.iters, args.attention, args.dtype)
