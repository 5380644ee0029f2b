"""
Step 6 of the lesson: let a trained model write.

    python generate.py                                    # 500 characters from out/ckpt.pt (the best weights)
    python generate.py --prompt "ROMEO:" --seed 7         # continue a prompt, repeatably
    python generate.py --num-samples 3 --top-p 0.9        # three samples, from the likeliest 90%
    python generate.py --interactive                      # type a line, the model continues it

A language model gives, for a context, a probability for every possible next character. To write,
we sample one character from that distribution, append it to the context, and ask again. The
checkpoint alone is enough: it carries the model's sizes, its weights and its vocabulary.
"""

import argparse
import contextlib
import os
import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the libraries below load: one line, not a traceback
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit("generate.py: interrupted while starting; nothing changed"))

import torch
from torch.nn import functional as F

from gpt import GPT, KVCache
from prepare import UserError, encode
from train import first_sentence, load_checkpoint, number, pick_device, refuse_what_cannot_fit


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Last-step logits (B, vocab_size) -> the weights to sample from (B, vocab_size): probabilities,
    except that top-p leaves them summing to less than 1 (torch.multinomial needs no more).

    temperature: divides the logits; below 1 sharpens the distribution (safer, more repetitive
    text), above 1 flattens it (wilder). 0 means always the likeliest character (greedy).
    top_k: keep only the k likeliest characters. top_p: keep the fewest likeliest characters
    whose probabilities add up to p ("nucleus" sampling). Both cut off the long tail of unlikely
    characters, which is where nonsense comes from.
    """
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()    # (B, vocab_size)
    # Minus the largest logit first (the same softmax), in float64: a tiny temperature then turns
    # the others into -inf and leaves the likeliest at 0, instead of overflowing to NaN.
    logits = (logits.double() - logits.max(dim=-1, keepdim=True).values) / temperature  # (B, vocab_size)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))             # (B, vocab_size)
    probs = F.softmax(logits.float(), dim=-1)                               # (B, vocab_size)
    if top_p is not None:
        sorted_probs, order = probs.sort(dim=-1, descending=True)           # (B, vocab_size) each
        # Drop a character when the likelier ones before it already reach top_p.
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p          # (B, vocab_size)
        drop[:, 0] = False                    # the likeliest is always kept, however small top_p is
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)    # (B, vocab_size)
    return probs


@torch.inference_mode()  # no_grad, and also no autograd bookkeeping at all: less work per character
def sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, kv_cache=True):
    """Yield max_new_tokens sampled ids, one (B,) tensor per step, continuing idx (B, T).

    The same loop as the models' own generate(), as a generator, so that each character can be
    printed the moment it is sampled; with sampling controls, and a KV cache for the GPT.
    """
    block_size = getattr(model, "block_size", None)   # the bigram looks at one character: no limit
    cache = KVCache(model.config) if kv_cache and isinstance(model, GPT) else None
    for step in range(max_new_tokens):
        if cache is not None and step == 0:
            # The prompt (its last block_size characters) in one pass, filling the cache.
            logits, _ = model(idx[:, -block_size:], cache=cache)           # (B, T, vocab_size)
        elif cache is not None and cache.length < block_size:
            # Only the newest character goes through the model; the cache holds the rest.
            logits, _ = model(idx[:, -1:], cache=cache)                     # (B, 1, vocab_size)
        else:
            # No cache, or the window is full. The lecture crops the context to its last
            # block_size characters, so from here on every character sits one position earlier
            # than at the step before, and under learned position embeddings its key and value
            # change: the cache would be stale. To stay exactly the lecture's model we recompute
            # the whole window per character, as the plain path does: past block_size characters
            # the cache saves nothing.
            idx_cond = idx if block_size is None else idx[:, -block_size:]  # (B, <= block_size)
            logits, _ = model(idx_cond)                                     # (B, T, vocab_size)
        probs = next_token_probs(logits[:, -1, :], temperature, top_k, top_p)  # (B, vocab_size)
        if temperature == 0:
            idx_next = probs.argmax(dim=-1, keepdim=True)                   # (B, 1)
        else:
            idx_next = torch.multinomial(probs, num_samples=1)              # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)                             # (B, T + 1)
        yield idx_next[:, 0]                                                # (B,)


def write_samples(model, chars, prompt, args, device, out_file=None):
    """Sample args.num_samples continuations of `prompt` as one batch; print them one after another.

    The first sample is printed as it is written (flushed per character, so you watch it type);
    the others, computed alongside it, follow.
    """
    prompt_ids = torch.as_tensor(encode(prompt, chars), dtype=torch.long, device=device)   # (T,)
    idx = prompt_ids.repeat(args.num_samples, 1)                                          # (B, T)
    texts = [list(prompt) for _ in range(args.num_samples)]
    if args.num_samples > 1:
        print(f"--- sample 1 of {args.num_samples} ---")
    print(prompt, end="", flush=True)
    for idx_next in sample(model, idx, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                           kv_cache=not args.no_kv_cache):
        for text, i in zip(texts, idx_next.tolist()):
            text.append(chars[i])
        print(texts[0][-1], end="", flush=True)
    print()
    for n, text in enumerate(texts[1:], start=2):
        print(f"--- sample {n} of {args.num_samples} ---")
        print("".join(text))
    if out_file is not None:
        for n, text in enumerate(texts, start=1):
            if args.num_samples > 1:
                out_file.write(f"--- sample {n} of {args.num_samples} ---\n")
            out_file.write("".join(text) + "\n")
        out_file.flush()


def unknown_characters(text, chars):
    """The characters of `text` missing from the vocabulary, each shown as repr, or '' if none."""
    return " ".join(repr(c) for c in sorted(set(text) - set(chars)))


def interact(model, chars, args, device, out_file):
    """Read a line, continue it, and ask again, until an empty line or Ctrl-D. Bad input asks again."""
    print("Type the start of a text and press Enter; an empty line or Ctrl-D ends.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return
        if not line:
            return
        unknown = unknown_characters(line, chars)
        if unknown:
            print(f"this model never saw: {unknown}; try again without them", file=sys.stderr)
            continue
        write_samples(model, chars, line, args, device, out_file)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Sample text from a checkpoint written by train.py.")
    parser.error = lambda message: sys.exit(f"generate.py: error: {message} (see --help)")
    parser.add_argument("--checkpoint", default=os.path.join("out", "ckpt.pt"),
                        help="checkpoint to sample from (default: out/ckpt.pt)")
    parser.add_argument("--prompt", default="\n",
                        help="text to continue (default: a newline, as a fresh text starts)")
    parser.add_argument("--max-new-tokens", type=number(int), default=500,
                        help="characters to write per sample (default: 500)")
    parser.add_argument("--temperature", type=number(float, zero_allowed=True), default=1.0,
                        help="0: always the likeliest character; below 1: safer; above 1: wilder (default: 1.0)")
    parser.add_argument("--top-k", type=number(int), default=None,
                        help="sample only from the K likeliest next characters (default: all)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample only from the likeliest characters that together have probability P, "
                             "0 < P <= 1 (default: all)")
    parser.add_argument("--num-samples", type=number(int), default=1,
                        help="how many independent samples to write, computed as one batch (default: 1)")
    parser.add_argument("--seed", type=number(int, zero_allowed=True, below=2**63), default=None,
                        help="random seed: the same seed writes the same text (default: a new one each run)")
    parser.add_argument("--interactive", action="store_true",
                        help="ask for prompts in a loop; an empty line or Ctrl-D ends")
    parser.add_argument("--out", default=None,
                        help="also write the samples to this file (replaced only once every sample is complete)")
    parser.add_argument("--no-kv-cache", action="store_true",
                        help="recompute the whole context for every character (the plain path, for comparison)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="where to run the model (default: auto: CUDA, then MPS, then CPU)")
    args = parser.parse_args(argv)
    if args.top_p is not None and not 0 < args.top_p <= 1:
        parser.error(f"argument --top-p: must be in (0, 1], got {args.top_p:g}")
    return args


def main(argv=None):
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C is handled below
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        # Sampling uses the fused attention kernel on every device. On a 2-core AMD EPYC CPU it was
        # slower than the explicit path for training but faster for sampling, with and without the
        # KV cache (1.55 vs 1.91 ms per cached character, 4.79 vs 5.23 ms uncached, CPU recipe).
        # In eval mode, where there is no dropout, both paths give the same logits (tests/test_gpt.py).
        checkpoint, model = load_checkpoint(args.checkpoint, device, fused_attention=True)
        chars = checkpoint["vocab"]
        # A lower bound of what --num-samples samples hold at once: the KV cache, and the logits.
        sizes = checkpoint["model_args"]
        per_sample = len(chars) + (2 * sizes["n_layer"] * sizes["block_size"] * sizes["n_embd"] if "n_layer" in sizes else 0)
        refuse_what_cannot_fit(4 * args.num_samples * per_sample, device, "try a smaller --num-samples")
        if not args.interactive:
            if not args.prompt:
                raise UserError("--prompt is empty; give at least one character (the default is a newline)")
            unknown = unknown_characters(args.prompt, chars)
            if unknown:
                raise UserError(f"the prompt has characters this model never saw: {unknown}")
        # --out is written to FILE.tmp beside it and renamed over FILE once every sample is
        # complete: an interrupted or failed run leaves an existing FILE exactly as it was.
        try:
            out_file = open(args.out + ".tmp", "w", encoding="utf-8") if args.out else None
        except OSError as e:
            raise UserError(f"cannot write --out {args.out}: {e.strerror}")
    except UserError as e:
        sys.exit(f"generate.py: error: {e}")

    if args.seed is not None:
        torch.manual_seed(args.seed)
    else:
        torch.seed()  # PyTorch starts from the same seed in every process: without this, the same text each run
    finished = False
    try:
        if args.interactive:
            interact(model, chars, args, device, out_file)
        else:
            write_samples(model, chars, args.prompt, args, device, out_file)
        if out_file is not None:
            out_file.close()
            os.replace(args.out + ".tmp", args.out)
        finished = True
    except KeyboardInterrupt:
        print()
        sys.exit(130)
    except BrokenPipeError:  # e.g. `python generate.py | head`: the reader has left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as e:  # e.g. the disk filled up under --out
        if args.out is None:
            sys.exit(f"generate.py: error: cannot write the samples: {e.strerror or e}")
        sys.exit(f"generate.py: error: cannot write --out {args.out}: {e.strerror}; an existing {args.out} is unchanged")
    except RuntimeError as e:  # e.g. out of memory for --num-samples
        hint = "; try a smaller --num-samples" if "memory" in str(e).lower() else ""
        sys.exit(f"generate.py: error: {first_sentence(e)}{hint}")
    finally:
        if out_file is not None and not finished:
            with contextlib.suppress(OSError):  # the text it still buffers cannot be written either
                out_file.close()
            if os.path.exists(args.out + ".tmp"):
                os.remove(args.out + ".tmp")


if __name__ == "__main__":
    main()
