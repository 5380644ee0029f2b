"""
Step 6 of the lesson: let a trained model write.

    python generate.py                              # 500 characters from out/ckpt.pt, the best weights
    python generate.py --prompt "ROMEO:" --seed 7   # continue a prompt, repeatably
    python generate.py --num-samples 3 --top-p 0.9  # three samples, each from the likeliest 90%
    python generate.py --interactive                # type a line, the model continues it

A language model gives, for a context, a probability for every possible next character. To write,
we sample one character from that distribution, append it to the context, and ask again. The
checkpoint is all it needs: the model's sizes, its weights and its vocabulary.
"""

import argparse
import math
import os
import pickle
import sys

import torch
from torch.nn import functional as F

from bigram import BigramLanguageModel
from gpt import GPT, GPTConfig, KVCache


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Last-step logits (B, vocab_size) -> the weights to sample from (B, vocab_size). temperature
    divides the logits: below 1 sharpens the distribution (safer text), above 1 flattens it (wilder),
    0 takes the likeliest character. top_k keeps the k likeliest characters, top_p the fewest whose
    probabilities add up to p: both cut off the long tail of unlikely characters, where nonsense lives."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()    # (B, vocab_size)
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


@torch.inference_mode()   # no autograd bookkeeping at all: less work per character
def sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, kv_cache=True):
    """Yield max_new_tokens sampled ids, one (B,) tensor per step, continuing idx (B, T): the models'
    own generate() loop, with the sampling controls and, for the GPT, a KV cache."""
    block_size = getattr(model, "block_size", None)   # the bigram looks at one character: no limit
    cache = KVCache(model.config) if kv_cache and isinstance(model, GPT) else None
    for step in range(max_new_tokens):
        if cache is not None and step == 0:
            logits, _ = model(idx[:, -block_size:], cache=cache)   # the prompt, in one pass (B, T, vocab_size)
        elif cache is not None and cache.length < block_size:
            logits, _ = model(idx[:, -1:], cache=cache)            # the newest character (B, 1, vocab_size)
        else:
            # No cache, or the window is full. Cropped to its last block_size characters, every
            # character sits one position earlier than a step before, so its key and value (which
            # include its position) change and the cache would be stale: the whole window again.
            logits, _ = model(idx if block_size is None else idx[:, -block_size:])  # (B, T, vocab_size)
        probs = next_token_probs(logits[:, -1, :], temperature, top_k, top_p)     # (B, vocab_size)
        idx_next = torch.multinomial(probs, num_samples=1)                        # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)                                   # (B, T + 1)
        yield idx_next[:, 0]                                                      # (B,)


def write_samples(model, chars, prompt, args):
    """Sample args.num_samples continuations of prompt as one batch and print them -> the text printed.
    The first sample appears as it is written; the others, computed alongside, follow it."""
    n = args.num_samples
    device = next(model.parameters()).device
    idx = torch.tensor([[chars.index(c) for c in prompt]] * n, device=device)   # (B, T)
    texts = [prompt] * n
    headers = [f"--- sample {i} of {n} ---\n" if n > 1 else "" for i in range(1, n + 1)]
    print(headers[0] + prompt, end="", flush=True)
    for idx_next in sample(model, idx, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                           kv_cache=not args.no_kv_cache):
        texts = [text + chars[i] for text, i in zip(texts, idx_next.tolist())]
        print(texts[0][-1], end="", flush=True)
    print("\n" + "".join(header + text + "\n" for header, text in zip(headers[1:], texts[1:])), end="", flush=True)
    return "".join(header + text + "\n" for header, text in zip(headers, texts))


def interact(model, chars, args):
    """Read a line, continue it, ask again, until an empty line or Ctrl-D -> all the text printed."""
    print("Type the start of a text and press Enter; an empty line or Ctrl-D ends.", file=sys.stderr)
    printed = ""
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline().rstrip("\n")   # "" at an empty line and at the end of input (Ctrl-D)
        if not line:
            return printed
        if set(line) - set(chars):
            print(f"this model never saw: {unknown(line, chars)}; try again without them", file=sys.stderr)
        else:
            printed += write_samples(model, chars, line, args)


# =================================================================================================
# The lesson ends here. Below: loading the checkpoint, the command line, and the output files.
# =================================================================================================

def fail(message):   # a mistake the user can fix: one line, exit status 1, no traceback
    raise SystemExit(f"generate.py: error: {message}")


def unknown(text, chars):
    return " ".join(repr(c) for c in sorted(set(text) - set(chars)))


def load_model(path, device):
    """A checkpoint of train.py -> (the model in eval mode, its vocabulary). weights_only=True reads
    tensors and plain values only: a checkpoint from elsewhere cannot run code when it is loaded."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        sizes = dict(checkpoint["model_args"])
        model = BigramLanguageModel(**sizes) if sizes.pop("model") == "bigram" else GPT(GPTConfig(**sizes))
        model.load_state_dict(checkpoint["model"])   # weights that do not fit the sizes: a RuntimeError
        return model.to(device).eval(), checkpoint["vocab"]
    except FileNotFoundError:
        fail(f"no checkpoint at {path}; train one first: python train.py")
    except pickle.UnpicklingError as e:   # weights_only refused a Python object (GLOBAL), or no pickle
        fail(f"refusing to load {path}: it holds Python objects that could run code, not just weights"
             if "GLOBAL" in str(e) else f"{path} is not a readable checkpoint (not a PyTorch file)")
    except (RuntimeError, EOFError, IsADirectoryError, KeyError, TypeError) as e:
        fail(f"{path} is not a readable checkpoint of train.py ({type(e).__name__}: {str(e)[:100]!r})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Sample text from a checkpoint written by train.py.")
    parser.error = lambda message: fail(f"{message} (see --help)")
    add = parser.add_argument
    add("--checkpoint", default="out/ckpt.pt", help="checkpoint to sample (default: out/ckpt.pt)")
    add("--prompt", default="\n", help="text to continue (default: a newline, as a fresh text starts)")
    add("--max-new-tokens", type=int, default=500, help="characters to write per sample (default: 500)")
    add("--temperature", type=float, default=1.0, help="0: the likeliest; below 1: safer; above 1: wilder")
    add("--top-k", type=int, help="sample only from the K likeliest next characters (default: all)")
    add("--top-p", type=float, help="sample only from the fewest likeliest characters that reach P")
    add("--num-samples", type=int, default=1, help="independent samples, computed as one batch (default: 1)")
    add("--seed", type=int, help="the same seed writes the same text (default: a new one each run)")
    add("--interactive", action="store_true", help="ask for prompts in a loop; an empty line or Ctrl-D ends")
    add("--out", help="also write the samples to this file, replaced only once they are complete")
    add("--no-kv-cache", action="store_true", help="recompute the whole context for every character")
    args = parser.parse_args(argv)
    for flag, ok, wanted in [("--max-new-tokens", args.max_new_tokens >= 1, "1 or more"),
                             ("--temperature", 0 <= args.temperature < math.inf, "a number, 0 or more"),
                             ("--top-k", (args.top_k or 1) >= 1, "1 or more"),
                             ("--top-p", 0 < (args.top_p or 1) <= 1, "above 0, at most 1"),
                             ("--num-samples", args.num_samples >= 1, "1 or more"),
                             ("--seed", 0 <= (args.seed or 0) < 2**63, "0 or more, below 2**63"),
                             ("--prompt", args.prompt or args.interactive, "at least one character")]:
        if not ok:
            fail(f"{flag} must be {wanted}, got {getattr(args, flag[2:].replace('-', '_'))!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    model, chars = load_model(args.checkpoint, torch.device(device))
    if not args.interactive and set(args.prompt) - set(chars):
        fail(f"the prompt has characters this model never saw: {unknown(args.prompt, chars)}")
    torch.manual_seed(args.seed) if args.seed is not None else torch.seed()   # no seed: other text each run
    try:
        prompt = args.prompt
        printed = interact(model, chars, args) if args.interactive else write_samples(model, chars, prompt, args)
    except (torch.OutOfMemoryError, MemoryError):
        fail("out of memory: try a smaller --num-samples")
    except KeyboardInterrupt:   # Ctrl-C: stop writing; --out is left as it was
        sys.exit(130)
    except BrokenPipeError:   # `python generate.py | head`: the reader has left, so stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    except OSError as e:   # e.g. printing to a full disk
        fail(f"cannot write the samples: {e.strerror}")
    if args.out:   # written beside it, then renamed over it: a failed write leaves the old file whole
        try:
            with open(args.out + ".tmp", "w", encoding="utf-8") as f:
                f.write(printed)
            os.replace(args.out + ".tmp", args.out)
        except OSError as e:
            if os.path.exists(args.out + ".tmp"):
                os.remove(args.out + ".tmp")
            fail(f"cannot write --out {args.out} ({e.strerror}); an existing {args.out} is unchanged")


if __name__ == "__main__":
    main()
