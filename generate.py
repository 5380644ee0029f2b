"""
Step 6 of the lesson: let a trained model write.

    python generate.py                              # 500 characters from out/ckpt.pt, the best weights
    python generate.py --prompt "ROMEO:" --seed 7   # continue a prompt, repeatably
    python generate.py --interactive --top-p 0.9    # type a line, the model continues it
    python generate.py --prompt "ROMEO:" --show-attention   # where each character looks, per head
    python generate.py --checkpoint out-addition/ckpt.pt --prompt 54+9=   # an adder (--task addition)

A language model gives, for a context, a probability for every possible next character. To write,
we sample one character from that distribution, append it to the context, and ask again. The
checkpoint is all it needs: the model's sizes, its weights and its vocabulary.
"""

import argparse
import os
import pathlib
import pickle
import shutil
import struct
import sys
import zlib

import numpy as np
import torch
from torch.nn import functional as F

from bigram import BigramLanguageModel
from gpt import GPT, GPTConfig, KVCache
from prepare import decode, encode


@torch.inference_mode()   # no autograd bookkeeping at all: less work per character
def sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, kv_cache=True):
    """Yield max_new_tokens sampled ids, one (B,) tensor per step, continuing idx (B, T): the lecture's
    generate() loop, with the sampling controls (next_token_probs) and the GPT's KV cache (with_kv_cache)."""
    block_size = getattr(model, "block_size", 1)   # the bigram's logits depend on the last character alone
    forward = with_kv_cache(model) if kv_cache and isinstance(model, GPT) else model
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -block_size:]                                        # (B, T), T <= block_size
        logits, _ = forward(idx_cond)                      # (B, T, vocab_size); with the cache, the new T
        probs = next_token_probs(logits[:, -1, :], temperature, top_k, top_p)  # (B, vocab_size)
        idx_next = torch.multinomial(probs, num_samples=1)                     # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)                                # (B, T + 1)
        yield idx_next[:, 0]                                                   # (B,)


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Last-step logits (B, vocab_size) -> the weights to sample from (B, vocab_size). temperature divides
    the logits: below 1 sharpens the distribution (safer text), above 1 flattens it (wilder), 0 takes the
    likeliest. top_k keeps the k likeliest, top_p the fewest whose probabilities reach p: both cut off the
    long tail of unlikely characters, where nonsense lives (top_k keeps any tied with the k-th too).
    After top_p the weights no longer sum to 1; torch.multinomial needs them only in proportion."""
    top_k, temperature = (1, 1.0) if temperature == 0 else (top_k, temperature)   # 0: the likeliest only
    # In float64 and minus the largest logit (the same softmax): a tiny temperature then leaves
    # the likeliest at 0 and the others at -inf, instead of overflowing to NaN.
    logits = (logits.double() - logits.max(dim=-1, keepdim=True).values) / temperature  # (B, vocab_size)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))             # (B, vocab_size)
    probs = F.softmax(logits.float(), dim=-1)                               # (B, vocab_size)
    if top_p is not None:
        sorted_probs, order = probs.sort(dim=-1, descending=True)           # (B, vocab_size) each
        # Drop a character when the likelier ones before it already reach top_p; keep the first.
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p          # (B, vocab_size)
        drop[:, 0] = False
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
    return probs


def with_kv_cache(model):
    """Speed trick: a stand-in for model(idx_cond) in sample()'s loop, the same logits up to rounding.
    While the window grows, each character's key and value stay the same, so a KVCache keeps them and
    each call runs only the characters it has not seen; once the window is full and slides, every call runs
    it whole again, as without a cache (tests/test_lesson_generate.py: the same samples)."""
    cache = KVCache(model.config)

    def forward(idx_cond):                     # idx_cond (B, T): the window, as sample() crops it
        if cache.length == idx_cond.size(1):   # full, and it slid: the oldest character left, so every key
            return model(idx_cond)             # and value changes: the whole window again, as the lecture
        return model(idx_cond[:, cache.length:], cache=cache)   # the new ones: (B, T - cache.length, vocab)
    return forward


# ===== The lesson ends here. Below: the command line, loading the checkpoint, printing and drawing. =====

def main(argv=None):
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    model, chars, digits = load_model(args.checkpoint, torch.device(device))   # digits: an adder's
    args.temperature = (0.0 if digits else 1.0) if args.temperature is None else args.temperature
    draw = args.show_attention or args.attention_png
    if draw and not isinstance(model, GPT):
        fail(f"{args.checkpoint} holds a bigram model: it has no attention to show")
    if digits and not (args.interactive or draw) and as_problem(args.prompt, digits) is None:
        fail(f"--prompt {args.prompt!r}: this model adds; ask it a sum of numbers of up to {digits} digits, "
             f"as in --prompt 12+34=")
    unseen = sorted(set(args.prompt) - set(chars))
    if unseen and not args.interactive:
        fail(f"the prompt has characters this model never saw: {unseen}; it knows {''.join(chars)!r}")
    # Without --seed, a fresh seed: every process would otherwise start from the same one, and write the same.
    torch.manual_seed(torch.seed() if args.seed is None else args.seed)
    try:
        if draw:
            text = args.prompt[-model.block_size:]
            weights = attention_weights(model, torch.tensor([encode(text, chars)], device=device))
            printed = draw_attention(weights, text) + "\n" if args.show_attention else ""
            print(printed, end="", flush=True)
            if args.attention_png:
                write_whole(args.attention_png, attention_png(weights), "--attention-png")
        else:
            prompts = typed_lines(chars, digits) if args.interactive else [args.prompt]
            write = write_samples if digits is None else answer_sum
            printed = "".join(write(model, chars, prompt, args) for prompt in prompts)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise   # a bug: Python's own traceback
        fail("out of memory: try a smaller --num-samples")
    except KeyboardInterrupt:   # Ctrl-C: stop writing; --out is left as it was
        sys.exit(130)
    except BrokenPipeError:   # `python generate.py | head`: the reader has left, so stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    except OSError as e:   # e.g. printing to a full disk
        fail(f"cannot write the samples: {e.strerror}")
    if args.out:
        write_whole(args.out, printed.encode("utf-8"), "--out")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Sample text from a checkpoint written by train.py.")
    parser.error = lambda message: fail(f"{message} (see --help)")
    add = parser.add_argument
    add("--checkpoint", default="out/ckpt.pt", help="checkpoint to sample (default: out/ckpt.pt)")
    add("--prompt", default="\n", help="text to continue (default: a newline, as a fresh text starts)")
    add("--max-new-tokens", type=int, default=500, help="characters to write per sample (default: 500)")
    add("--temperature", type=float, help="0: the likeliest; below 1: safer; above 1: wilder (default: 1, "
        "and 0 for an adder)")
    add("--top-k", type=int, help="sample only from the K likeliest next characters (default: all)")
    add("--top-p", type=float, help="sample only from the fewest likeliest characters that reach P")
    add("--num-samples", type=int, default=1, help="independent samples, computed as one batch (default: 1)")
    add("--seed", type=int, help="the same seed writes the same text (default: a new one each run)")
    add("--interactive", action="store_true", help="ask for prompts in a loop; an empty line or Ctrl-D ends")
    add("--out", help="also write the samples to this file, replaced only once they are complete")
    add("--show-attention", action="store_true", help="instead of sampling, draw every head's attention "
        "weights over the prompt (at most block_size characters), darker for more")
    add("--attention-png", metavar="FILE", help="instead of sampling, write the attention weights over the "
        "prompt as a PNG image: a row per layer, a column per head")
    args = parser.parse_args(argv)
    for flag, ok, wanted in [("--max-new-tokens", args.max_new_tokens >= 1, "1 or more"),
                             ("--temperature", 0 <= (args.temperature or 0) < float("inf"),
                              "a number, 0 or more"),
                             ("--top-k", args.top_k is None or args.top_k >= 1, "1 or more"),
                             ("--top-p", args.top_p is None or 0 < args.top_p <= 1, "above 0, at most 1"),
                             ("--num-samples", args.num_samples >= 1, "1 or more"),
                             ("--seed", args.seed is None or 0 <= args.seed < 2**63, "in [0, 2**63)"),
                             ("--prompt", args.prompt or args.interactive, "at least one character")]:
        if not ok:
            fail(f"{flag} must be {wanted}, got {getattr(args, flag[2:].replace('-', '_'))!r}")
    if args.interactive and (args.show_attention or args.attention_png):
        fail("--interactive continues the lines you type; the attention is drawn over --prompt: give one")
    return args


def fail(message):   # a mistake the user can fix: one line, exit status 1, no traceback
    raise SystemExit(f"generate.py: error: {message}")


def out_of_memory(error):   # CUDA's own error, or a RuntimeError of the CPU's or MPS allocator, by its words
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or any(
        words in str(error) for words in ("DefaultCPUAllocator: ", "MPS backend out of memory"))


def load_model(path, device):
    """train.py's checkpoint -> (the model in eval mode, its vocabulary, digits per number if it adds)."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)   # tensors only: no code runs
        sizes = dict(checkpoint["model_args"])
        model = BigramLanguageModel(**sizes) if sizes.pop("model") == "bigram" else GPT(GPTConfig(**sizes))
        model.load_state_dict(checkpoint["model"])   # weights that do not fit the sizes: a RuntimeError
        return model.to(device).eval(), checkpoint["vocab"], checkpoint.get("data", {}).get("digits")
    except FileNotFoundError:
        fail(f"no checkpoint at {path}; train one first: python train.py")
    except (pickle.UnpicklingError, RuntimeError, EOFError, IsADirectoryError, KeyError, TypeError) as e:
        if "GLOBAL" in str(e):   # weights_only refused to rebuild a Python object
            fail(f"refusing to load {path}: it holds Python objects that could run code, not just weights")
        fail(f"{path} is not a readable checkpoint of train.py ({str(e)[:100]!r})")


def typed_lines(chars, digits=None):
    """Each line typed, until an empty line or Ctrl-D; one this model cannot read is asked again."""
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline().rstrip("\n")   # "" at an empty line and at the end of input (Ctrl-D)
        if not line:
            return
        unseen = sorted(set(line) - set(chars))
        if unseen:
            print(f"this model never saw {unseen}; try again without them", file=sys.stderr)
        elif digits and as_problem(line, digits) is None:
            print(f"this model adds: type a sum of numbers of up to {digits} digits, as 12+34=",
                  file=sys.stderr)
        else:
            yield line


def write_samples(model, chars, prompt, args):
    """Sample args.num_samples continuations of prompt in one batch; print the first as it comes -> all."""
    n, device = args.num_samples, next(model.parameters()).device
    idx = torch.tensor([encode(prompt, chars)] * n, device=device)   # (B, T), B = n
    texts = [f"--- sample {i} of {n} ---\n{prompt}" if n > 1 else prompt for i in range(1, n + 1)]
    print(texts[0], end="", flush=True)
    for idx_next in sample(model, idx, args.max_new_tokens, args.temperature, args.top_k, args.top_p):
        texts = [text + chars[i] for text, i in zip(texts, idx_next.tolist())]
        print(texts[0][-1], end="", flush=True)
    print("\n" + "".join(text + "\n" for text in texts[1:]), end="", flush=True)   # then samples 2, 3, ...
    return "".join(text + "\n" for text in texts)


def as_problem(line, digits):
    """A sum typed the usual way, "54+9=" -> as the adder reads it, "450+900=" (digits 3: each number
    zero-padded and its least significant digit first, train.py's layout); None if it is not such a sum."""
    numbers = line.removesuffix("=").split("+")
    if len(numbers) != 2 or not all(n.isdigit() and n.isascii() and len(n) <= digits for n in numbers):
        return None
    return "+".join(n.zfill(digits)[::-1] for n in numbers) + "="


def answer_sum(model, chars, line, args):
    """An adder's answer to a sum typed the usual way: it writes digits + 1 characters after the problem
    in its layout; printed the usual way round, with what the model wrote beside it -> the printed line."""
    digits = (model.block_size - 2) // 3   # train.py's block_size for sums: 3 * digits + 2
    problem = as_problem(line, digits)
    idx = torch.tensor([encode(problem, chars)], device=next(model.parameters()).device)   # (1, T)
    answer = sample(model, idx, digits + 1, args.temperature, args.top_k, args.top_p)   # (1,) per step
    written = decode([i.item() for i in answer], chars)                    # the sum, units first
    usual = written[::-1].lstrip("0") or "0"
    text = f"{line.removesuffix('=')}={usual}   (the model wrote {problem}{written})\n"
    print(text, end="", flush=True)
    return text


def write_whole(path, data, flag):
    """Write data beside path, then rename it over path: a failed write leaves an old file whole."""
    temporary = pathlib.Path(path + ".tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        fail(f"cannot write {flag} {path} ({e.strerror}); an existing {path} is unchanged")


@torch.inference_mode()
def attention_weights(model, idx):
    """idx (1, T) -> the weights every head gives, from each position to those up to it: (n_layer, nh, T, T),
    the lecture's `wei` as each block's attention dropout receives it (the fused call never forms it)."""
    weights = []   # (nh, T, T) per block, in order
    hooks = [block.sa.attn_dropout.register_forward_hook(lambda m, inputs, out: weights.append(inputs[0][0]))
             for block in model.blocks]
    for block in model.blocks:
        block.sa.fused_attention = False   # from now on, the explicit path
    model(idx)
    for hook in hooks:
        hook.remove()
    return torch.stack(weights).float().cpu()   # (n_layer, nh, T, T)


def draw_attention(weights, text):
    """weights (n_layer, nh, T, T) -> the text of a picture per head: row t shows what the character at
    position t (at the row's left) takes from each character up to it (along the top)."""
    n_layer, n_head, T, _ = weights.shape
    shades = " .:-=+*#%@"   # weights up to 0, 1/9, ..., 1: blank (the future) for 0 only, "." for a little
    levels = (9 * weights).ceil().clamp(max=9).long()                  # (n_layer, nh, T, T): shades' indices
    labels = "".join("·" if c == " " else c if c.isprintable() else "↵" for c in text)
    width = max(T, len(f"layer {n_layer} head {n_head}"))
    per_line = max(1, (shutil.get_terminal_size().columns - 2) // (width + 2))   # heads side by side
    lines = []
    for layer in range(n_layer):
        for first in range(0, n_head, per_line):
            heads = range(first, min(first + per_line, n_head))
            lines.append("  " + "  ".join(f"layer {layer + 1} head {h + 1}".ljust(width) for h in heads))
            lines.append("  " + "  ".join(labels.ljust(width) for h in heads))
            for t in range(T):
                rows = ("".join(shades[i] for i in levels[layer, h, t].tolist()) for h in heads)
                lines.append(labels[t] + " " + "  ".join(row.ljust(width) for row in rows))
            lines.append("")
    return "\n".join(lines)


def attention_png(weights):
    """weights (n_layer, nh, T, T) -> a PNG image, a layer per row and a head per column: white for 0 and
    black for 1. Written with numpy and zlib: a PNG is chunks of bytes, the pixels deflated in one."""
    scale = max(1, 256 // weights.shape[-1])   # each head about 256 pixels wide
    squares = np.round(255 * (1 - weights.numpy())).astype(np.uint8)          # (n_layer, nh, T, T)
    squares = squares.repeat(scale, axis=2).repeat(scale, axis=3)              # scale x scale pixels each
    squares = np.pad(squares, ((0, 0), (0, 0), (3, 3), (3, 3)), constant_values=160)   # grey frames
    n_layer, n_head, side, _ = squares.shape
    image = squares.transpose(0, 2, 1, 3).reshape(n_layer * side, n_head * side)   # (height, width)
    rows = np.insert(image, 0, 0, axis=1).tobytes()   # each row of pixels starts with its filter, 0: none
    header = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 0, 0, 0, 0)   # 8-bit grey
    png = b"\x89PNG\r\n\x1a\n"
    for kind, data in [(b"IHDR", header), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]:
        png += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return png   # each chunk: its length, kind, data and checksum


if __name__ == "__main__":
    main()
