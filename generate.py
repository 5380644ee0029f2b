"""
Step 4 of the lesson: let a trained model write.

    python generate.py                                    # 500 characters from out/ckpt.pt
    python generate.py --prompt "ROMEO:" --seed 7         # continue a prompt, repeatably

A language model gives, for a context, a probability for every possible next character. To write,
we sample one character from that distribution, append it to the context, and ask again. The
checkpoint alone is enough: it carries the model's sizes, its weights and its vocabulary.
"""

import argparse
import os
import sys

import torch
from torch.nn import functional as F

from prepare import UserError, encode
from train import load_checkpoint, pick_attention, pick_device, positive


@torch.no_grad()
def sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, block_size=None):
    """Yield max_new_tokens sampled ids, one (B,) tensor per step, continuing idx (B, T).

    The same loop as the models' own generate(), written as a generator so that each character
    can be printed the moment it is sampled, and with temperature and top-k added.
    """
    for _ in range(max_new_tokens):
        # A model with positional embeddings has seen only block_size positions: crop to those.
        idx_cond = idx if block_size is None else idx[:, -block_size:]   # (B, <= block_size)
        logits, _ = model(idx_cond)                                     # (B, T, vocab_size)
        # Below 1 the temperature sharpens the distribution (safer text), above 1 flattens it.
        logits = logits[:, -1, :] / temperature                         # (B, vocab_size)
        if top_k is not None:
            # Keep only the k most likely characters: the long tail of rare ones is where nonsense lives.
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))      # (B, vocab_size)
        probs = F.softmax(logits, dim=-1)                               # (B, vocab_size)
        idx_next = torch.multinomial(probs, num_samples=1)              # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)                         # (B, T + 1)
        yield idx_next[:, 0]                                            # (B,)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sample text from a checkpoint written by train.py.")
    parser.error = lambda message: sys.exit(f"generate.py: error: {message} (see --help)")
    parser.add_argument("--checkpoint", default=os.path.join("out", "ckpt.pt"),
                        help="checkpoint to sample from (default: out/ckpt.pt)")
    parser.add_argument("--prompt", default="\n",
                        help="text to continue (default: a newline, as a fresh text starts)")
    parser.add_argument("--max-new-tokens", type=positive(int), default=500,
                        help="characters to write per sample (default: 500)")
    parser.add_argument("--temperature", type=positive(float), default=1.0,
                        help="below 1: safer, more repetitive; above 1: wilder (default: 1.0)")
    parser.add_argument("--top-k", type=positive(int), default=None,
                        help="sample only from the K most likely next characters (default: all)")
    parser.add_argument("--num-samples", type=positive(int), default=1,
                        help="how many independent samples to write (default: 1)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed: the same seed writes the same text (default: a new one each run)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="where to run the model (default: auto: CUDA, then MPS, then CPU)")
    args = parser.parse_args(argv)

    try:
        device = pick_device(args.device)
        fused_attention, _ = pick_attention("auto", device, dropout=0.0)  # sampling never drops out
        checkpoint, model = load_checkpoint(args.checkpoint, device, fused_attention)
        chars = checkpoint["vocab"]
        if not args.prompt:
            raise UserError("--prompt is empty; give at least one character (the default is a newline)")
        try:
            prompt_ids = encode(args.prompt, chars)
        except KeyError as e:
            unknown = " ".join(repr(c) for c in e.args[0])
            raise UserError(f"the prompt has characters this model never saw: {unknown}")
    except UserError as e:
        sys.exit(f"generate.py: error: {e}")

    if args.seed is not None:
        torch.manual_seed(args.seed)
    block_size = checkpoint["model_args"].get("block_size")
    try:
        for i in range(args.num_samples):
            if args.num_samples > 1:
                print(f"--- sample {i + 1} of {args.num_samples} ---")
            idx = torch.tensor(prompt_ids, dtype=torch.long, device=device)[None, :]  # (1, T)
            print(args.prompt, end="", flush=True)
            for idx_next in sample(model, idx, args.max_new_tokens, args.temperature, args.top_k, block_size):
                print(chars[idx_next.item()], end="", flush=True)
            print()
    except KeyboardInterrupt:
        print()
        sys.exit(130)
    except BrokenPipeError:  # e.g. `python generate.py | head`: the reader has left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
