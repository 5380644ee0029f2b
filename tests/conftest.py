"""Shared helpers for the tests: a small text of our own, prepared data, small models, script runs."""

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so tests can `import prepare, bigram, train, generate`
# The same suite on every machine: a GPU stays hidden from the tests and the scripts they start (a test
# of what a GPU changes patches the probe), and each test names the optimiser and number format it is
# about. tests/probe/sitecustomize.py runs the suite as with or without a CPU's bfloat16 hardware.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

# The full text where CI and developers keep it; real users download it with prepare.py.
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

SPEAKERS = ["KING:", "QUEEN:", "CITIZEN:", "NURSE:"]
LINES = [
    "What light is this that breaks upon the hill?",
    "Good morrow, cousin; speak, and speak you plain.",
    "I will not go, my lord, until the end.",
    "Come, let us hence, the night is almost done.",
    "O gentle friend, thy words are sweet to me.",
    "Then let it be; we part, and part as friends.",
]


def make_text(n_speeches=400, seed=0):
    """A play-shaped text of our own (~40k characters): speaker names, then one to three lines."""
    rng = random.Random(seed)
    speeches = []
    for _ in range(n_speeches):
        lines = [rng.choice(LINES) for _ in range(rng.randint(1, 3))]
        speeches.append(rng.choice(SPEAKERS) + "\n" + "\n".join(lines) + "\n")
    return "\n".join(speeches)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


@pytest.fixture
def prepared(tmp_path, text_file):
    """tmp_path with data/ prepared from the small text; tests run the scripts from there."""
    import prepare
    prepare.prepare(str(text_file), str(tmp_path / "data"), 0.1)
    return tmp_path


def train_on_small_text(folder, flags):
    """Prepare the small text in folder/data, train with `flags` into folder/out -> folder/out/ckpt.pt."""
    import prepare
    import train
    text = folder / "play.txt"
    text.write_text(make_text(), encoding="utf-8")
    prepare.prepare(str(text), str(folder / "data"), 0.1)
    train.train(*train.parse_args(flags + ["--device", "cpu", "--data-dir", str(folder / "data"),
                                           "--out-dir", str(folder / "out")]))
    return folder / "out" / "ckpt.pt"


@pytest.fixture(scope="session")
def bigram_checkpoint(tmp_path_factory):
    """A bigram trained for 300 steps on the small text."""
    return train_on_small_text(tmp_path_factory.mktemp("bigram"), [
        "--model", "bigram", "--max-iters", "300", "--eval-interval", "100", "--eval-iters", "10"])


@pytest.fixture(scope="session")
def gpt_checkpoint(tmp_path_factory):
    """A tiny GPT (block_size 16) trained for 150 steps on the small text, in float32."""
    return train_on_small_text(tmp_path_factory.mktemp("gpt"), [
        "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "16",
        "--max-iters", "150", "--eval-interval", "50", "--eval-iters", "5", "--learning-rate", "3e-3",
        "--dtype", "float32"])


@pytest.fixture(scope="session")
def changed_gpt_checkpoint(tmp_path_factory):
    """The same tiny GPT with every change from the papers: RoPE, a tied head, ReLU squared, QK-norm."""
    return train_on_small_text(tmp_path_factory.mktemp("changed"), [
        "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "16",
        "--max-iters", "50", "--eval-interval", "50", "--eval-iters", "5", "--learning-rate", "3e-3",
        "--dtype", "float32", "--rope", "--tie-weights", "--activation", "relu2", "--qk-norm"])


# train.py's flags for a GPT that trains in seconds on the small text.
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "8",
        "--eval-iters", "5", "--device", "cpu", "--dtype", "float32", "--warmup-iters", "5"]

SMALL = dict(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64, dropout=0.0)


def small_gpt(**changes):
    """A GPT of SMALL's sizes (with `changes`), the same weights each time, in eval mode."""
    import torch
    from gpt import GPT, GPTConfig
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**SMALL, **changes})).eval()


def read_log(folder):
    with open(folder / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def saved(path):
    import torch
    return torch.load(path, weights_only=True)


def run_script(script, *args, cwd, timeout=300, stdin=None, memory_gb=None):
    """Run one of the project's scripts as a user would, from `cwd`; returns the CompletedProcess.
    memory_gb: the most address space it may take, so that a larger allocation fails at once."""
    def limit_memory():
        import resource   # POSIX
        resource.setrlimit(resource.RLIMIT_AS, (memory_gb << 30, memory_gb << 30))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=stdin,
                          preexec_fn=memory_gb and limit_memory)


def train_here(folder, *flags):
    """train.train in this process, on folder/data into folder/out (flags after these win)."""
    import train
    return train.train(*train.parse_args(["--data-dir", str(folder / "data"),
                                          "--out-dir", str(folder / "out"), *map(str, flags)]))


def assert_one_line_error(result, *fragments):
    """The script failed the way a user mistake should: non-zero exit, one line, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# Exercises 2 and 3: the adder is trained once; the pretrained model once per test file (its tests write
# into its folder).

def prepare_text(folder, name, text, vocab=None):
    """folder/name.txt holding `text`, prepared into folder/name/ (in `vocab`'s ids, if given)."""
    import prepare
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return prepare.prepare(str(folder / f"{name}.txt"), str(folder / name), 0.1, vocab=vocab)


@pytest.fixture(scope="session")
def adder(tmp_path_factory):
    """A GPT of the addition recipe trained on two-digit sums for 700 steps -> its folder. (2 x 64 at 3e-3
    learned them in some seeds only; the recipe's 2 x 128 at 1e-3 in seeds 1, 2 and 1337.)"""
    folder = tmp_path_factory.mktemp("adder")
    train_here(folder, "--task", "addition", "--digits", "2", "--max-iters", "700", "--eval-interval", "350",
               "--eval-iters", "2", "--device", "cpu", "--dtype", "float32")
    return folder


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny GPT trained on the small play (data/, out/), and another text in its vocabulary (other/)."""
    folder = tmp_path_factory.mktemp("pretrained")
    big = prepare_text(folder, "data", make_text() + "xyz")
    prepare_text(folder, "other", make_text(seed=5)[::-1], vocab="".join(big["chars"]))
    train_here(folder, "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
               "--batch-size", "16", "--max-iters", "100", "--eval-interval", "50", "--eval-iters", "4",
               "--device", "cpu", "--dtype", "float32", "--optimizer", "adamw", "--learning-rate", "3e-3")
    return folder
