"""Holding up: a checkpoint survives SIGKILL mid-save, and failed commands leave earlier results alone."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_script

SAVE_LOOP = """
import sys, torch
sys.path.insert(0, {root!r})
import train
base = torch.arange(2_000_000, dtype=torch.float32)  # 8 MB, so a save takes long enough to be caught mid-way
i = 0
while True:
    i += 1
    train.save_checkpoint({path!r}, {{"i": i, "weights": base + i}})
    print(i, flush=True)
"""


def test_sigkill_at_any_moment_leaves_the_old_or_the_new_checkpoint_never_a_broken_one(tmp_path):
    path = tmp_path / "ckpt.pt"
    base = torch.arange(2_000_000, dtype=torch.float32)
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9):
        process = subprocess.Popen([sys.executable, "-c", SAVE_LOOP.format(root=str(ROOT), path=str(path))],
                                   stdout=subprocess.PIPE, text=True)
        first = process.stdout.readline()   # the imports are done and one save is complete
        time.sleep(delay)                    # then a few more saves, the last one cut at a random point
        process.send_signal(signal.SIGKILL)
        completed = len((first + process.communicate()[0]).split())
        checkpoint = torch.load(path, weights_only=True)                 # never torn, so this never raises
        assert completed <= checkpoint["i"] <= completed + 1             # the last save, or the one in flight
        assert torch.equal(checkpoint["weights"], base + checkpoint["i"])  # and whole


@pytest.fixture
def finished_run(prepared, bigram_checkpoint):
    """prepared/ with an earlier run in out/: its checkpoint and log must survive every failure below."""
    (prepared / "out").mkdir()
    for name in ("ckpt.pt", "last.pt"):
        (prepared / "out" / name).write_bytes((bigram_checkpoint.parent / name).read_bytes())
    (prepared / "out" / "log.csv").write_text("iter,train_loss,val_loss,elapsed_s\n0,4.0,4.0,0.1\n")
    return prepared


@pytest.mark.parametrize("flags, message", [
    (["--block-size", "1000000"], "--block-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--n-layer", "-2"], "--n-layer"),
    (["--dropout", "1.5"], "--dropout"),
    (["--n-embd", "30", "--n-head", "4"], "multiple"),
    (["--data-dir", "nowhere"], "not prepared"),
    (["--resume", "--model", "gpt"], "different model"),
])
def test_a_failed_training_command_leaves_the_earlier_run_untouched(finished_run, flags, message):
    before = {name: (finished_run / "out" / name).read_bytes() for name in ("ckpt.pt", "last.pt", "log.csv")}
    assert_one_line_error(run_script("train.py", *flags, cwd=finished_run), message)
    for name, content in before.items():
        assert (finished_run / "out" / name).read_bytes() == content, name
    assert sorted(p.name for p in (finished_run / "out").iterdir()) == ["ckpt.pt", "last.pt", "log.csv"]


def test_resume_from_a_checkpoint_missing_keys_is_one_line(finished_run):
    checkpoint = torch.load(finished_run / "out" / "last.pt", weights_only=True)
    del checkpoint["vocab"]
    torch.save(checkpoint, finished_run / "out" / "last.pt")
    assert_one_line_error(run_script("train.py", "--resume", cwd=finished_run), "missing vocab")


def test_a_prompt_of_only_unknown_characters_is_one_line_and_writes_nothing(bigram_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", bigram_checkpoint, "--prompt", "€€™",
                        "--out", tmp_path / "more.txt", cwd=tmp_path)
    assert_one_line_error(result, "'€'", "'™'")
    assert not (tmp_path / "more.txt").exists()
