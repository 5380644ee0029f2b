"""
Step 1 of the lesson: turn a text into numbers a model can learn from.

A character-level language model reads one character at a time, so the "tokenizer" is just the
sorted list of distinct characters in the text: character i of that list has id i. This script
builds that vocabulary, encodes the whole text into ids, and splits it into a training part
(the first 90%) and a validation part (the last 10%) that the model never trains on, so that we
can tell learning apart from memorising.

    python prepare.py                      # tiny Shakespeare, downloaded to data/input.txt
    python prepare.py --input my_text.txt  # any UTF-8 text

It writes into data/:
    train.bin, val.bin   the two splits as flat arrays of ids (uint8, or uint16 for > 256 chars)
    vocab.json           the characters in id order, plus the sizes, for people and for train.py
"""

import argparse
import codecs
import hashlib
import json
import os
import sys
import urllib.request

import numpy as np

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class UserError(Exception):
    """A mistake the user can fix (bad file, bad size, bad checkpoint): reported as one line, no traceback."""


# -----------------------------------------------------------------------------
# Getting the text

def download_shakespeare(path, url=SHAKESPEARE_URL):
    """Download tiny Shakespeare to `path`, checking its sha256 before it lands there."""
    print(f"downloading tiny Shakespeare from {url}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw = response.read()
    except (OSError, ValueError) as e:  # URLError is an OSError; a malformed URL a ValueError
        reason = getattr(e, "reason", e)
        raise UserError(
            f"could not download the text ({reason}); without internet, copy tiny Shakespeare "
            f"to {path} or pass --input PATH to your own text")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise UserError(f"the download from {url} is not tiny Shakespeare "
                           f"(sha256 {digest[:12]}..., expected {SHAKESPEARE_SHA256[:12]}...)")
    write_atomically(path, raw)


def read_chunks(path, chunk_bytes=1 << 22):
    """Yield the UTF-8 text of `path` as strings of about chunk_bytes each, or raise a one-line UserError.

    Reading in chunks keeps memory flat however large the text is; the incremental decoder
    carries a character split across two chunks over to the next one.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read before the current chunk
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(chunk_bytes)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise UserError(f"{path} is not UTF-8 text (bad byte near offset {offset + e.start:,}); "
                                    f"convert it, e.g. iconv -t UTF-8")
                if "\0" in text:
                    raise UserError(f"{path} looks binary (it contains NUL bytes), not like a text")
                if text:
                    yield text
                if not raw:
                    return
                offset += len(raw)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}")
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give a text file")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}")


def code_points(text):
    """A string as an array of its Unicode code points (N,): strings cannot be indexed as arrays."""
    if text.isascii():  # one byte per character already: 4x less memory traffic than UTF-32
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


# -----------------------------------------------------------------------------
# The tokenizer: characters <-> integers

def build_vocab(text):
    """The sorted distinct characters of `text`, as one string: chars[i] is the character of id i."""
    return "".join(sorted(set(text)))


def encode(text, chars):
    """Map every character of `text` to its id in `chars` (vectorised); unknown characters raise KeyError.

    A lookup table indexed by code point holds each character's id (-1 for characters not in
    the vocabulary), so encoding is one array gather, not a Python loop per character.
    """
    lookup = np.full(0x110000, -1, dtype=np.int32)           # (all Unicode code points,)
    lookup[code_points(chars)] = np.arange(len(chars))         # (vocab_size,) ids written in
    ids = lookup[code_points(text)]                            # (N,)
    if (ids < 0).any():
        raise KeyError("".join(sorted(set(text) - set(chars))))
    return ids


def decode(ids, chars):
    """Map a sequence of ids back to a string."""
    return "".join(chars[i] for i in ids)


def id_dtype(vocab_size):
    """The smallest unsigned integer type that holds every id: one byte per character when it can."""
    if vocab_size <= 2**8:
        return np.uint8
    if vocab_size <= 2**16:
        return np.uint16
    raise UserError(f"the text has {vocab_size:,} distinct characters; at most 65,536 are supported")


# -----------------------------------------------------------------------------
# Preparing a text of any size: two passes over it, nothing half-written

def write_atomically(path, data):
    """Write bytes to `path` via a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def prepare(input_path, data_dir, val_fraction, chunk_bytes=1 << 22):
    """Read, encode, split and write; returns the vocabulary info that is written to vocab.json.

    The text is read twice, a chunk at a time, so memory stays flat for any size: the first pass
    finds the vocabulary and the length, the second encodes and writes the two splits.
    """
    # Pass 1: which characters occur, and how many characters there are.
    counts = np.zeros(0x110000, dtype=np.int64)                # (all Unicode code points,)
    for text in read_chunks(input_path, chunk_bytes):
        counts += np.bincount(code_points(text), minlength=0x110000)
    n_chars = int(counts.sum())
    if n_chars == 0:
        raise UserError(f"{input_path} is empty; give a text with at least a few sentences")
    chars = "".join(map(chr, np.flatnonzero(counts)))          # sorted by code point, like build_vocab
    vocab_size = len(chars)
    dtype = id_dtype(vocab_size)

    # The validation split is the *end* of the text, not random characters: the model must
    # continue passages it has never seen, not fill gaps between ones it has.
    n_train = int(n_chars * (1 - val_fraction))
    if n_train < 2 or n_chars - n_train < 2:
        raise UserError(f"{input_path} has {n_chars} characters, too short to split into train "
                        f"and validation parts of at least 2 characters each")

    # Pass 2: encode each chunk and append it to the split it belongs to.
    paths = {name: os.path.join(data_dir, f"{name}.bin") for name in ("train", "val")}
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(paths["train"] + ".tmp", "wb") as train_file, open(paths["val"] + ".tmp", "wb") as val_file:
            written = 0
            for text in read_chunks(input_path, chunk_bytes):
                ids = encode(text, chars).astype(dtype)            # (chunk,)
                cut = max(0, min(len(ids), n_train - written))     # how much of this chunk is train
                train_file.write(ids[:cut].tobytes())
                val_file.write(ids[cut:].tobytes())
                written += len(ids)
        for path in paths.values():
            os.replace(path + ".tmp", path)
        info = {
            "vocab_size": vocab_size,
            "dtype": np.dtype(dtype).name,
            "train_tokens": n_train,
            "val_tokens": n_chars - n_train,
            "source": os.path.abspath(input_path),
            "chars": list(chars),
        }
        # vocab.json goes last: train.py reads it first, so it only ever sees a complete set.
        vocab_json = json.dumps(info, ensure_ascii=False, indent=1)
        write_atomically(os.path.join(data_dir, "vocab.json"), vocab_json.encode("utf-8"))
    except KeyError:  # pass 2 met a character pass 1 did not see
        raise UserError(f"{input_path} changed while it was being read; run prepare.py again")
    except OSError as e:
        raise UserError(f"cannot write to {data_dir}: {e.strerror}")
    finally:
        for path in paths.values():  # after a failure, leave no temporary file behind
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Build the character vocabulary and the train/val splits of a text.")
    # Report mistakes as one line, not usage plus error.
    parser.error = lambda message: sys.exit(f"prepare.py: error: {message} (see --help)")
    parser.add_argument("--input", default=None,
                        help="UTF-8 text to train on; default data/input.txt in --data-dir, "
                             "downloaded (tiny Shakespeare) if it is not there")
    parser.add_argument("--data-dir", default="data", help="where train.bin, val.bin and vocab.json go (default: data)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of the text, taken from its end, held out for validation "
                             "(default: 0.1)")
    parser.add_argument("--url", default=SHAKESPEARE_URL,
                        help="where to download tiny Shakespeare from when there is no input file "
                             "(default: char-rnn's copy on GitHub; any mirror works, the download is "
                             "checked against its sha256)")
    args = parser.parse_args(argv)

    try:
        if not 0 < args.val_fraction < 1:
            raise UserError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
        input_path = args.input
        if input_path is None:
            input_path = os.path.join(args.data_dir, "input.txt")
            if not os.path.exists(input_path):
                os.makedirs(args.data_dir, exist_ok=True)
                download_shakespeare(input_path, args.url)
        info = prepare(input_path, args.data_dir, args.val_fraction)
    except UserError as e:
        sys.exit(f"prepare.py: error: {e}")
    except OSError as e:  # e.g. data/ cannot be created
        sys.exit(f"prepare.py: error: {e.strerror}: {e.filename}")

    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in info["chars"][:200])
    print(f"vocabulary: {shown}{' ...' if info['vocab_size'] > 200 else ''}")
    print(f"vocab_size: {info['vocab_size']} (ids stored as {info['dtype']})")
    print(f"train: {info['train_tokens']:,} characters, val: {info['val_tokens']:,} characters")
    print(f"wrote {args.data_dir}/train.bin, val.bin, vocab.json")


if __name__ == "__main__":
    main()
