"""
Step 3 of the lesson: train a model on the prepared text and watch the loss fall.

    python prepare.py                   # once: builds data/train.bin, val.bin, vocab.json
    python train.py --model bigram      # trains, evaluates, writes out/ckpt.pt and out/log.csv
    python generate.py                  # samples from out/ckpt.pt

The loop is the lecture's: draw a random batch of text chunks, predict every next character,
measure the cross-entropy loss, backpropagate, take an AdamW step; every eval_interval steps
estimate the train and validation loss and save a checkpoint when validation improves.
"""

import argparse
import csv
import json
import math
import os
import pickle
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from bigram import BigramLanguageModel
from prepare import UserError

# Default hyperparameters, as plain names per model. Any flag given on the command line wins.
DEFAULTS = {
    "bigram": dict(batch_size=32, block_size=8, max_iters=3000, eval_interval=300, eval_iters=200,
                   learning_rate=1e-2),
}


# -----------------------------------------------------------------------------
# Data: the prepared splits, and random batches cut from them

def load_splits(data_dir):
    """Open data/train.bin and val.bin as read-only memory maps -> (train, val, chars)."""
    vocab_path = os.path.join(data_dir, "vocab.json")
    if not os.path.exists(vocab_path):
        raise UserError(f"{data_dir}/ is not prepared (no vocab.json); run: python prepare.py")
    try:
        with open(vocab_path, encoding="utf-8") as f:
            info = json.load(f)
        chars, dtype = "".join(info["chars"]), np.dtype(info["dtype"])
        # A memory map reads only the pages a batch touches, so start-up costs the same for
        # 1 MB of text as for 10 GB.
        train_data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=dtype, mode="r")
        val_data = np.memmap(os.path.join(data_dir, "val.bin"), dtype=dtype, mode="r")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{data_dir}/ is incomplete or damaged ({e}); run: python prepare.py")
    return train_data, val_data, chars


def get_batch(data, batch_size, block_size, device):
    """batch_size random chunks of data -> inputs x (B, T) and targets y (B, T), y = x shifted by one.

    The target at position t is the character at t + 1: one chunk of block_size + 1 characters
    holds block_size training examples at once, with contexts of length 1, 2, ..., block_size.
    """
    ix = torch.randint(len(data) - block_size, (batch_size,))                 # (B,) chunk starts
    offsets = ix.numpy()[:, None] + np.arange(block_size + 1)                  # (B, T + 1)
    chunk = torch.from_numpy(data[offsets].astype(np.int64))                   # (B, T + 1)
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()                 # (B, T), (B, T)
    if device.type == "cuda":  # pinned memory lets the copy to the GPU overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, device):
    """Mean loss over eval_iters random batches of each split -> {"train": float, "val": float}.

    One batch's loss is noisy; the average over many is a steady number to compare across time.
    model.eval() turns dropout off, so we measure the model we would actually sample from.
    """
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size, block_size, device)
            _, loss = model(x, y)
            losses[k] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


# -----------------------------------------------------------------------------
# Models and checkpoints

def build_model(model_args):
    """A fresh model from a plain dict such as {"model": "bigram", "vocab_size": 65}."""
    kind = model_args.get("model")
    sizes = {k: v for k, v in model_args.items() if k != "model"}
    if kind == "bigram":
        return BigramLanguageModel(**sizes)
    raise ValueError(f"unknown model kind {kind!r}")


def save_checkpoint(path, checkpoint):
    """torch.save to a temporary file, then rename over `path`: a crash leaves the old or the new file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("model", "model_args", "vocab", "iter_num", "best_val_loss")


def load_checkpoint(path, device):
    """Read a checkpoint written by save_checkpoint -> (checkpoint dict, model on device, in eval mode).

    weights_only=True refuses anything but tensors and plain Python values, so a checkpoint from
    the internet cannot run code on your machine when it is loaded.
    """
    if not os.path.exists(path):
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
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise UserError(f"{path} is not a checkpoint of this project (missing {', '.join(missing)})")
    if len(checkpoint["vocab"]) != checkpoint["model_args"].get("vocab_size"):
        raise UserError(f"{path} is damaged: its vocabulary has {len(checkpoint['vocab'])} characters "
                        f"but its model expects {checkpoint['model_args'].get('vocab_size')}")
    try:
        model = build_model(checkpoint["model_args"])
        model.load_state_dict(checkpoint["model"])
    except Exception as e:  # unknown model kind, wrong sizes, missing or extra weights
        raise UserError(f"{path} does not match its model description ({first_sentence(e)})")
    return checkpoint, model.to(device).eval()


def first_sentence(error):
    """The first sentence of an exception's message, for one-line error reports."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.split(". ")[0][:160]


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
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for, but this machine has no MPS; use --device cpu")
    return torch.device(name)


# -----------------------------------------------------------------------------
# The training loop

def train(args):
    """Train as the (already resolved) args say; returns the best validation loss."""
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    print(f"device: {device}" + (" (auto)" if args.device == "auto" else ""))

    train_data, val_data, chars = load_splits(args.data_dir)
    for name, data in (("train", train_data), ("val", val_data)):
        if len(data) <= args.block_size:
            raise UserError(f"--block-size {args.block_size} needs more than {args.block_size} "
                             f"characters of {name} data, but data/{name}.bin has {len(data)}")
    splits = {"train": train_data, "val": val_data}

    model_args = {"model": args.model, "vocab_size": len(chars)}
    model = build_model(model_args).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model}, {n_params:,} parameters, vocab_size {len(chars)}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)

    try:
        os.makedirs(args.out_dir, exist_ok=True)
        ckpt_path = os.path.join(args.out_dir, "ckpt.pt")
        log_path = os.path.join(args.out_dir, "log.csv")
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["iter", "train_loss", "val_loss", "elapsed_s"])
    except OSError as e:
        raise UserError(f"cannot write to --out-dir {args.out_dir}: {e.strerror}")

    def checkpoint(iter_num, best_val_loss):
        return {"model": model.state_dict(), "model_args": model_args, "vocab": chars,
                "iter_num": iter_num, "best_val_loss": best_val_loss,
                "optimizer": optimizer.state_dict(), "config": vars(args)}

    best_val_loss = math.inf
    start = time.time()
    progress = tqdm(total=args.max_iters, desc="training", unit="it", dynamic_ncols=True)
    for iter_num in range(args.max_iters + 1):
        # Every eval_interval steps, and after the last one, measure both splits and log them.
        if iter_num % args.eval_interval == 0 or iter_num == args.max_iters:
            losses = estimate_loss(model, splits, args.eval_iters, args.batch_size, args.block_size, device)
            elapsed = time.time() - start
            progress.write(f"step {iter_num}: train loss {losses['train']:.4f}, "
                           f"val loss {losses['val']:.4f} ({elapsed:.1f} s)")
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([iter_num, f"{losses['train']:.4f}", f"{losses['val']:.4f}", f"{elapsed:.2f}"])
            if losses["val"] < best_val_loss:
                best_val_loss = losses["val"]
                save_checkpoint(ckpt_path, checkpoint(iter_num, best_val_loss))
        if iter_num == args.max_iters:
            break

        # One step of gradient descent on one random batch.
        x, y = get_batch(train_data, args.batch_size, args.block_size, device)
        logits, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        progress.update()
    progress.close()

    # The end state is saved too, so the checkpoint always holds the last step that ran.
    save_checkpoint(ckpt_path, checkpoint(args.max_iters, best_val_loss))
    print(f"best val loss {best_val_loss:.4f}; wrote {ckpt_path} and {log_path} "
          f"in {time.time() - start:.1f} s")
    return best_val_loss


# -----------------------------------------------------------------------------
# Command line

def positive(kind):
    """An argparse type that accepts only numbers > 0 of the given kind."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value
    return parse


def parse_args(argv=None):
    """Flags -> args, with every hyperparameter the user left out filled in from DEFAULTS."""
    parser = argparse.ArgumentParser(
        description="Train a character-level language model on the text prepared by prepare.py.")
    # Report mistakes as one line, not usage plus error.
    parser.error = lambda message: sys.exit(f"train.py: error: {message} (see --help)")
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="bigram",
                        help="which model to train (default: bigram)")
    hp = parser.add_argument_group("hyperparameters (defaults depend on --model)")
    hp.add_argument("--batch-size", type=positive(int), help="independent sequences per step (B)")
    hp.add_argument("--block-size", type=positive(int), help="context length in characters (T)")
    hp.add_argument("--max-iters", type=positive(int), help="number of training steps")
    hp.add_argument("--eval-interval", type=positive(int),
                    help="evaluate (and maybe checkpoint) every this many steps")
    hp.add_argument("--eval-iters", type=positive(int),
                    help="batches averaged per split for each evaluation")
    hp.add_argument("--learning-rate", type=positive(float), help="AdamW step size")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="where to train; auto picks CUDA, then MPS, then CPU (default: auto)")
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    parser.add_argument("--data-dir", default="data", help="where prepare.py wrote its files (default: data)")
    parser.add_argument("--out-dir", default="out", help="where ckpt.pt and log.csv go (default: out)")
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except UserError as e:
        sys.exit(f"train.py: error: {e}")


if __name__ == "__main__":
    main()
