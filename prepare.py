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
import select
import signal
import sys
import urllib.request

if __name__ == "__main__":  # Ctrl-C while the libraries below load: one line, not a traceback
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit("prepare.py: interrupted while starting; nothing changed"))

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
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # the write failed (a full disk, Ctrl-C): no half file left behind
            os.remove(tmp)


def copy_stream(input_path, copy_path, chunk_bytes=1 << 22):
    """Copy a pipe, /dev/stdin or any input that can be read only once into a file -> copy_path.

    prepare reads its text twice (that keeps its memory flat); a pipe would be empty the second time.
    """
    try:
        # Unbuffered reads return what the pipe holds now. On POSIX the pipe is waited for a
        # second at a time, so a Ctrl-C that lands just before a read is seen within a second,
        # not only when the next byte comes.
        with open(input_path, "rb", buffering=0) as source, open(copy_path, "wb") as copy:
            while True:
                if os.name == "posix" and not select.select([source], [], [], 1.0)[0]:
                    continue
                chunk = source.read(chunk_bytes)
                if not chunk:
                    break
                copy.write(chunk)
    except OSError as e:
        raise UserError(f"cannot read {input_path}: {e.strerror}")
    return copy_path


def prepare(input_path, data_dir, val_fraction, chunk_bytes=1 << 22):
    """Read, encode, split and write; returns the vocabulary info that is written to vocab.json.

    The text is read twice, a chunk at a time, so memory stays flat for any size: the first pass
    finds the vocabulary and the length, the second encodes and writes the two splits. Nothing in
    data_dir changes until all three new files are written in full; then they replace the old ones.
    """
    paths = {name: os.path.join(data_dir, name) for name in ("train.bin", "val.bin", "vocab.json")}
    stream_copy = os.path.join(data_dir, "input.stream.tmp")
    source = os.path.abspath(input_path)
    try:
        if os.path.exists(input_path) and not os.path.isfile(input_path) and not os.path.isdir(input_path):
            os.makedirs(data_dir, exist_ok=True)   # a pipe or a device: it cannot be read twice
            input_path = copy_stream(input_path, stream_copy, chunk_bytes)
        info = encode_and_split(input_path, data_dir, val_fraction, paths, chunk_bytes, source)
        # Publish: every new file is complete on disk, so three renames are all that is left; no
        # Ctrl-C can come between them, and train.py refuses a set torn by a crash (sizes disagree).
        blocked = {signal.SIGINT, signal.SIGTERM}
        if hasattr(signal, "pthread_sigmask"):  # a Ctrl-C waits until all three are in place
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for path in paths.values():
                os.replace(path + ".tmp", path)
        finally:
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        return info
    except KeyError:  # pass 2 met a character pass 1 did not see
        raise UserError(f"{input_path} changed while it was being read; run prepare.py again")
    except OSError as e:
        raise UserError(f"cannot write to {data_dir}: {e.strerror}; its earlier files are unchanged")
    finally:
        for path in [p + ".tmp" for p in paths.values()] + [stream_copy]:
            if os.path.exists(path):  # after a failure or Ctrl-C, leave no temporary file behind
                os.remove(path)


def encode_and_split(input_path, data_dir, val_fraction, paths, chunk_bytes, source):
    """The two passes over the text: write train.bin.tmp, val.bin.tmp and vocab.json.tmp -> the vocab info."""
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
    if n_train < 2:
        raise UserError(f"--val-fraction {val_fraction!r} leaves {n_train} of {input_path}'s {n_chars:,} "
                        f"characters for training; lower it")
    if n_chars - n_train < 2:
        raise UserError(f"{input_path} has {n_chars:,} characters: --val-fraction {val_fraction!r} leaves "
                        f"{n_chars - n_train} for validation; raise it, or give a longer text")

    # Pass 2: encode each chunk and append it to the split it belongs to.
    os.makedirs(data_dir, exist_ok=True)
    with open(paths["train.bin"] + ".tmp", "wb") as train_file, open(paths["val.bin"] + ".tmp", "wb") as val_file:
        written = 0
        for text in read_chunks(input_path, chunk_bytes):
            ids = encode(text, chars).astype(dtype)            # (chunk,)
            cut = max(0, min(len(ids), n_train - written))     # how much of this chunk is train
            train_file.write(ids[:cut].tobytes())
            val_file.write(ids[cut:].tobytes())
            written += len(ids)
        for f in (train_file, val_file):
            f.flush()
            os.fsync(f.fileno())
    if written != n_chars:  # the text grew or shrank between the two passes
        raise KeyError(input_path)
    info = {
        "vocab_size": vocab_size,
        "dtype": np.dtype(dtype).name,
        "train_tokens": n_train,
        "val_tokens": n_chars - n_train,
        "source": source,
        "chars": list(chars),
    }
    with open(paths["vocab.json"] + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return info


def main(argv=None):
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C is handled below
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
    except KeyboardInterrupt:
        sys.exit(f"prepare.py: interrupted; {args.data_dir}/ is as it was")

    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in info["chars"][:200])
    print(f"vocabulary: {shown}{' ...' if info['vocab_size'] > 200 else ''}")
    print(f"vocab_size: {info['vocab_size']} (ids stored as {info['dtype']})")
    print(f"train: {info['train_tokens']:,} characters, val: {info['val_tokens']:,} characters")
    print(f"wrote {args.data_dir}/train.bin, val.bin, vocab.json")


if __name__ == "__main__":
    main()
