"""Step 1 of the lesson: turn a text into numbers a model can learn from. Each distinct character gets an id
(encode, decode), and the ids split into the first 90% to train on and the last 10% to validate on. Below
the divider, the same for texts of any size, written to data/: train.bin and val.bin (the ids, a byte
each, two beyond 256 characters) and vocab.json (the characters, in the order of their ids, and more).

    python prepare.py                      # tiny Shakespeare, downloaded to data/input.txt
    python prepare.py --input my_text.txt  # any UTF-8 text (or a pipe: --input /dev/stdin)
    python prepare.py --input small.txt --vocab data-big/vocab.json --data-dir data-small   # to fine-tune
"""

import argparse
import codecs
import contextlib
import hashlib
import json
import os
import signal
import urllib.request

import numpy as np

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def build_vocab(text, chars=""):
    """The sorted distinct characters of text (and of chars, a vocabulary so far): chars[i] has id i."""
    return "".join(sorted(set(text) | set(chars)))


def encode(text, chars):   # a string -> its ids, through the lecture's stoi: string to integer
    stoi = {ch: i for i, ch in enumerate(chars)}
    return [stoi[c] for c in text]


def decode(ids, chars):   # ids -> the string they stand for, through the lecture's itos: integer to string
    itos = {i: ch for i, ch in enumerate(chars)}
    return "".join(itos[i] for i in ids)


def encode_and_split(text, val_fraction=0.1):
    """The lecture's way, for a text that fits in memory -> (chars, train ids, val ids). The first 90% to
    train on, the last 10% held out: the loss on text the model never trained on shows what it learned,
    not what it memorised. prepare(), below, does the same for a text of any size, a chunk at a time."""
    chars = build_vocab(text)
    data = encode(text, chars)
    n = int(len(data) * (1 - val_fraction))
    return chars, data[:n], data[n:]


# ----- The lesson ends here. Below: the same vocabulary, ids and split for texts of gigabytes (numpy on the
# characters' numbers, a chunk at a time; tests/test_lesson_prepare.py: the same ids), files written whole,
# the text read in chunks, the command line.

def distinct_chars(text):   # build_vocab(text): the code points that occur, counted instead of put in a set
    return "".join(map(chr, np.flatnonzero(np.bincount(code_points(text)))))


def encode_array(text, chars):   # encode(text, chars) as an array (N,); a character not in chars gets -1
    table = np.full(0x110000, -1, dtype=np.int32)   # (every code point,): its id, all looked up in one step
    table[code_points(chars)] = np.arange(len(chars))
    return table[code_points(text)]                  # (N,)


def code_points(text):   # the characters' numbers (N,): one byte each when all are ASCII, 4x less to move
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)     # (N,)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)   # (N,)


def prepare(input_path, data_dir, val_fraction, chunk_bytes=1 << 22, vocab=None):
    """encode_and_split() for a text of any size, in flat memory: the text read a chunk at a time, its ids
    written to data_dir's train.bin and val.bin -> the info written to vocab.json."""
    with all_or_nothing(data_dir) as tmp:   # below: data_dir changes only once all is whole
        path = input_path if os.path.isfile(input_path) else copy_of(input_path, tmp, chunk_bytes)   # a pipe
        chars, n, sha256 = "", 0, hashlib.sha256()
        for raw, text in read_chunks(path, chunk_bytes):               # pass 1: the vocabulary and length
            chars, n = build_vocab(distinct_chars(text), chars), n + len(text)
            sha256.update(raw)   # the text's UTF-8 bytes: which text it was, as train.py --resume checks
        unknown = sorted(set(chars) - set(vocab or chars))
        if unknown:
            fail(f"{input_path} has characters the vocabulary lacks: {''.join(unknown)!r}; remove them")
        chars = vocab or chars   # vocab: another text's characters (a pretrained model's), to use its ids
        n_train = int(n * (1 - val_fraction))   # the lecture's n: data[:n] to train on, data[n:] held out
        if min(n_train, n - n_train) < 2:
            fail(f"{input_path} has {n:,} characters: --val-fraction {val_fraction} leaves {n_train:,} to "
                 f"train on and {n - n_train:,} to validate; give a longer text or another --val-fraction")
        if len(chars) > 2**16:
            fail(f"{input_path} has {len(chars):,} distinct characters; at most 65,536 are supported")
        dtype = np.uint8 if len(chars) <= 2**8 else np.uint16
        with open(tmp["train.bin"], "wb") as train_file, open(tmp["val.bin"], "wb") as val_file:
            to_train = n_train   # of the ids still to come, how many go to train.bin
            for raw, text in read_chunks(path, chunk_bytes):           # pass 2: the ids, split
                ids = encode_array(text, chars).astype(dtype)           # (chunk,)
                train_file.write(ids[:to_train].tobytes())
                val_file.write(ids[to_train:].tobytes())
                to_train = max(0, to_train - len(ids))
        info = {"vocab_size": len(chars), "dtype": np.dtype(dtype).name, "train_tokens": n_train,
                "val_tokens": n - n_train, "sha256": sha256.hexdigest(), "chars": list(chars)}
        with open(tmp["vocab.json"], "w", encoding="utf-8") as f:
            json.dump(info, f, ensure_ascii=False, indent=1)
    return info


@contextlib.contextmanager
def all_or_nothing(data_dir, names=("train.bin", "val.bin", "vocab.json")):
    """Yield {name: a temporary file in data_dir}; after the block, names' files are replaced all at once."""
    tmp = {name: os.path.join(data_dir, name + ".tmp") for name in (*names, "input.copy")}
    mask_signals = getattr(signal, "pthread_sigmask", lambda how, signals: None)   # POSIX; elsewhere a no-op
    try:
        os.makedirs(data_dir, exist_ok=True)
        yield tmp
        for name in names:   # flushed to the disk before the renames: a power cut keeps old or new
            with open(tmp[name], "rb+") as f:
                os.fsync(f.fileno())
        # The renames: a Ctrl-C waits until all are done (and train.py refuses a torn set).
        mask_signals(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        for name in names:
            os.replace(tmp[name], os.path.join(data_dir, name))
    except OSError as e:
        fail(f"cannot write to {data_dir}/ ({e.strerror}); its earlier files are unchanged")
    finally:
        for path in tmp.values():   # after a failure, or a pipe's copy: no temporary file left
            if os.path.exists(path):
                os.remove(path)
        mask_signals(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})   # a Ctrl-C that waited: now


def copy_of(input_path, tmp, chunk_bytes):   # a pipe can be read only once: -> a copy of it, to read twice
    with open(tmp["input.copy"], "wb") as f:
        f.writelines(raw for raw, _ in read_chunks(input_path, chunk_bytes))   # which refuses a folder
    return tmp["input.copy"]


def read_chunks(path, chunk_bytes):
    """Yield path's bytes a piece at a time, each with its UTF-8 text; a failed read ends the script."""
    if os.path.isdir(path) or not os.path.exists(path):
        fail(f"{path} is not a file; give a text file" if os.path.exists(path) else f"no such file: {path}")
    decoder = codecs.getincrementaldecoder("utf-8")()   # a character cut between pieces waits for the next
    try:
        with open(path, "rb") as f:
            while raw := f.read(chunk_bytes):
                text = decoder.decode(raw)
                if "\0" in text:
                    fail(f"{path} looks binary (it holds NUL bytes), not like a text")
                yield raw, text
        decoder.decode(b"", final=True)   # a text that ends inside a character is not UTF-8 either
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text; convert it first, e.g. with iconv -t UTF-8")
    except OSError as e:
        fail(f"cannot read {path} ({e.strerror}); nothing was written")


def download_shakespeare(data_dir, url=SHAKESPEARE_URL):
    """Download tiny Shakespeare to data_dir/input.txt: only if its sha256 is the known one, and whole."""
    print(f"downloading tiny Shakespeare from {url}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw = response.read()
    except (OSError, ValueError) as e:   # no network (URLError is an OSError), or a malformed URL
        fail(f"could not download the text ({getattr(e, 'reason', e)}); without internet, copy tiny "
             f"Shakespeare to {data_dir}/input.txt or pass --input PATH to your own text")
    if hashlib.sha256(raw).hexdigest() != SHAKESPEARE_SHA256:
        fail(f"the download from {url} is not tiny Shakespeare (its sha256 differs)")
    with all_or_nothing(data_dir, ["input.txt"]) as tmp, open(tmp["input.txt"], "wb") as f:
        f.write(raw)


def fail(message):   # a mistake the user can fix: one line, exit status 1, no traceback
    raise SystemExit(f"prepare.py: error: {message}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the character vocabulary and the train/val splits.")
    parser.error = lambda message: fail(f"{message} (see --help)")
    parser.add_argument("--input", help="a UTF-8 text (default: tiny Shakespeare, in DATA_DIR/input.txt)")
    parser.add_argument("--data-dir", default="data", help="where the three files go (default: data)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share held out (default: 0.1)")
    parser.add_argument("--vocab", help="the vocab.json of another prepared text: encode with its ids, as "
                        "train.py --init-from needs to fine-tune a model pretrained on that text")
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        fail(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    vocab = None
    if args.vocab:
        try:
            with open(args.vocab, encoding="utf-8") as f:
                vocab = "".join(json.load(f)["chars"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"--vocab {args.vocab} is not a vocab.json of prepare.py ({getattr(e, 'strerror', e)})")
    input_path = args.input or os.path.join(args.data_dir, "input.txt")
    try:
        if args.input is None and not os.path.exists(input_path):
            download_shakespeare(args.data_dir)
        info = prepare(input_path, args.data_dir, args.val_fraction, vocab=vocab)
    except KeyboardInterrupt:
        raise SystemExit(f"prepare.py: interrupted; {args.data_dir}/ holds no half-written file")
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in info["chars"][:200])
    print(f"vocab_size: {info['vocab_size']} (ids stored as {info['dtype']}): {shown}")
    print(f"train: {info['train_tokens']:,} characters, val: {info['val_tokens']:,} characters")


if __name__ == "__main__":
    main()
