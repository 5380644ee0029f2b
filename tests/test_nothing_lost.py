"""Nothing lost: whatever a command is fed, it leaves the user's files whole and ends in one line."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import prepare
from conftest import ROOT, assert_one_line_error, make_text, run_script

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "8",
        "--eval-iters", "5", "--device", "cpu", "--dtype", "float32", "--warmup-iters", "5"]


def files_of(folder):
    """Every file below folder with its bytes: to show that a command changed nothing."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def start_script(script, *args, cwd):
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert path.exists(), process.communicate()[1][-2000:]


# --- prepare.py -----------------------------------------------------------------------------------

def test_a_pipe_is_prepared_like_the_file_it_carries(tmp_path, text_file):
    assert run_script("prepare.py", "--input", text_file, "--data-dir", "from_file", cwd=tmp_path).returncode == 0
    piped = subprocess.run([sys.executable, str(ROOT / "prepare.py"), "--input", "/dev/stdin", "--data-dir", "from_pipe"],
                           cwd=tmp_path, input=text_file.read_bytes(), capture_output=True)
    assert piped.returncode == 0, piped.stderr
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "from_pipe" / name).read_bytes() == (tmp_path / "from_file" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "from_pipe").iterdir()) == ["train.bin", "val.bin", "vocab.json"]


def test_a_disk_that_fills_before_vocab_json_leaves_the_old_set_whole(prepared, tmp_path, monkeypatch):
    before = files_of(prepared / "data")
    other = tmp_path / "other.txt"
    other.write_text("".join(map(chr, range(0x100, 0x300))) * 3, encoding="utf-8")   # 512 characters: uint16 ids
    real_dump = json.dump

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(prepare.UserError, match="No space left on device; its earlier files are unchanged"):
        prepare.prepare(str(other), str(prepared / "data"), 0.1)
    monkeypatch.setattr(json, "dump", real_dump)
    assert files_of(prepared / "data") == before                       # no new split, no .tmp left


def test_ctrl_c_in_prepare_is_one_line_and_leaves_data_as_it_was(prepared):
    before = files_of(prepared / "data")
    fifo = prepared / "slow_pipe"
    os.mkfifo(fifo)
    process = start_script("prepare.py", "--input", fifo, cwd=prepared)
    with open(fifo, "w") as writer:          # a writer that never finishes: prepare waits for the rest
        writer.write(make_text())
        writer.flush()
        wait_for(prepared / "data" / "input.stream.tmp", process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["prepare.py: interrupted; data/ is as it was"]
    assert files_of(prepared / "data") == before


# --- what train.py reads back: vocab.json, log.csv, checkpoints --------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda v: v.update(dtype="float64"), "dtype 'float64'"),
    (lambda v: v.update(vocab_size=v["vocab_size"] + 1), "not vocab_size distinct characters"),
    (lambda v: v.update(chars=v["chars"][:-3], vocab_size=v["vocab_size"] - 3), "ids beyond"),
    (lambda v: v.update(train_tokens=v["train_tokens"] + 1), "train.bin has"),
    (lambda v: v.update(dtype="uint16"), "train.bin has"),
    (lambda v: v.pop("chars"), "chars"),
])
def test_a_damaged_or_foreign_vocab_json_is_one_line(prepared, change, message):
    vocab = json.loads((prepared / "data" / "vocab.json").read_text(encoding="utf-8"))
    change(vocab)
    (prepared / "data" / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert_one_line_error(run_script("train.py", *TINY, "--max-iters", "1", cwd=prepared), "damaged", message)
    assert not (prepared / "out").exists()


def test_a_resume_whose_log_is_missing_or_cut_short_says_so_and_goes_on(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "10", "--eval-interval", "5", cwd=prepared).returncode == 0
    (prepared / "out" / "log.csv").write_text("iter,train_loss,val_loss,elapsed_s\n0,4.1,4.1,0.1\n5,3.9,3.")
    result = run_script("train.py", "--resume", "--max-iters", "15", cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert "has 1 unreadable row(s)" in result.stdout and "Traceback" not in result.stderr
    (prepared / "out" / "log.csv").unlink()
    result = run_script("train.py", "--resume", "--max-iters", "20", cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert "log.csv is missing" in result.stdout
    plot = run_script("train.py", "--plot", "out", cwd=prepared)
    assert plot.returncode == 0 and "fewer than two evaluations" in plot.stdout   # only step 20 was logged since


def test_after_a_kill_a_resume_logs_only_the_steps_its_checkpoint_kept(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "20", "--eval-interval", "10", cwd=prepared).returncode == 0
    at_step_20 = (prepared / "out" / "last.pt").read_bytes()
    assert run_script("train.py", "--resume", "--max-iters", "40", cwd=prepared).returncode == 0
    # As if killed after logging steps 30 and 40 but before last.pt was written again:
    (prepared / "out" / "last.pt").write_bytes(at_step_20)
    assert run_script("train.py", "--resume", "--max-iters", "30", cwd=prepared).returncode == 0
    steps = [line.split(",")[0] for line in (prepared / "out" / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["0", "10", "20", "30"]


def test_a_resume_with_nothing_to_do_says_so_and_changes_nothing(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "10", "--eval-interval", "5", cwd=prepared).returncode == 0
    before = files_of(prepared / "out")
    result = run_script("train.py", "--resume", "--max-iters", "8", cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert "out/last.pt is at step 10, which already reaches --max-iters 8: nothing to train" in result.stdout
    assert files_of(prepared / "out") == before


def test_a_checkpoint_whose_fields_have_the_wrong_types_is_one_line(prepared, bigram_checkpoint):
    checkpoint = torch.load(bigram_checkpoint, weights_only=True)
    for field, wrong in (("iter_num", "300"), ("vocab", list(checkpoint["vocab"])), ("model_args", None)):
        torch.save({**checkpoint, field: wrong}, prepared / "bad.pt")
        result = run_script("generate.py", "--checkpoint", "bad.pt", cwd=prepared)
        assert_one_line_error(result, "bad.pt is damaged", f"its {field} is a {type(wrong).__name__}")


# --- a run's out-dir ------------------------------------------------------------------------------------

def test_a_fresh_run_never_replaces_an_earlier_one_unless_told(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "10", "--eval-interval", "5", cwd=prepared).returncode == 0
    before = files_of(prepared / "out")
    result = run_script("train.py", *TINY, "--max-iters", "10", cwd=prepared)       # --resume forgotten
    assert_one_line_error(result, "out/ already holds a run (last.pt at step 10, best val loss",
                          "--resume", "--out-dir", "--overwrite")
    assert files_of(prepared / "out") == before
    result = run_script("train.py", *TINY, "--max-iters", "5", "--eval-interval", "5", "--overwrite", cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == 5


def test_sigterm_saves_like_ctrl_c_and_a_second_run_in_the_same_out_dir_is_refused(prepared):
    process = start_script("train.py", *TINY, "--max-iters", "1000000", "--eval-interval", "50", cwd=prepared)
    wait_for(prepared / "out" / "last.pt", process)
    second = run_script("train.py", "--resume", cwd=prepared)
    assert_one_line_error(second, "another train.py is running in out/")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    step = int(stdout.split("interrupted at step ")[1].split()[0])
    assert "(SIGTERM); saved out/last.pt" in stdout
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == step > 0


def test_temporary_files_of_a_killed_save_are_cleared_by_the_next_run(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "10", "--eval-interval", "5", cwd=prepared).returncode == 0
    (prepared / "out" / "last.pt.tmp").write_bytes(b"half a checkpoint")
    assert run_script("train.py", "--resume", "--max-iters", "15", cwd=prepared).returncode == 0
    assert sorted(p.name for p in (prepared / "out").iterdir()) == ["ckpt.pt", "last.pt", "log.csv"]


# --- memory, environment, numbers at the edges -------------------------------------------------------

def test_out_of_memory_is_one_line_naming_the_flag_to_lower(prepared, gpt_checkpoint):
    result = run_script("train.py", *TINY, "--batch-size", "100000000", "--max-iters", "1", cwd=prepared)
    assert_one_line_error(result, "out of memory", "--batch-size")
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--num-samples", "100000000", cwd=prepared)
    assert_one_line_error(result, "--num-samples")


@pytest.mark.parametrize("environment, message", [
    ({"WORLD_SIZE": "2"}, "RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not"),
    ({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29519"},
     "whole numbers"),
    ({"WORLD_SIZE": "2", "RANK": "5", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29519"},
     "RANK=5"),
])
def test_a_half_set_torchrun_environment_is_one_line(prepared, environment, message):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY, "--max-iters", "1"], cwd=prepared,
                            capture_output=True, text=True, timeout=120, env={**os.environ, **environment})
    assert_one_line_error(result, message)


@pytest.mark.parametrize("flags", [
    ["--batch-size", str(2**70)], ["--seed", str(2**70)], ["--eval-iters", str(10**15)],
    ["--block-size", str(2**70)], ["--learning-rate", "1e308", "--max-iters", "3"],
])
def test_numbers_at_the_edges_of_what_integers_hold_are_one_line(prepared, flags):
    result = run_script("train.py", *TINY, *flags, cwd=prepared)
    if result.returncode == 0:                  # a number that works is fine too, but never a traceback
        assert "Traceback" not in result.stderr
    else:
        assert_one_line_error(result)


def test_sampling_numbers_at_the_edges_are_greedy_or_one_line(gpt_checkpoint, tmp_path):
    def generate(*flags):
        return run_script("generate.py", "--checkpoint", gpt_checkpoint, "--max-new-tokens", "30", "--seed", "1",
                          *flags, cwd=tmp_path)
    greedy = generate("--temperature", "0")
    assert greedy.returncode == 0
    # A temperature too small for float32 (1e-300 / float32 is 0/0) and a top-p below every
    # probability both leave only the likeliest character: greedy, not NaN.
    for flags in (["--temperature", "1e-300"], ["--temperature", "5e-324"], ["--top-p", "1e-300"]):
        result = generate(*flags)
        assert result.returncode == 0 and result.stdout == greedy.stdout, (flags, result.stderr)
    for seed in (str(2**70), "-1"):
        assert_one_line_error(run_script("generate.py", "--checkpoint", gpt_checkpoint, "--seed", seed, cwd=tmp_path),
                              "--seed")


def test_generate_out_keeps_the_old_file_until_the_new_samples_are_complete(gpt_checkpoint, tmp_path):
    out = tmp_path / "samples.txt"
    out.write_text("my earlier samples\n")
    process = start_script("generate.py", "--checkpoint", gpt_checkpoint, "--max-new-tokens", "10000000",
                           "--out", out, cwd=tmp_path)
    process.stdout.read(20)                     # it is sampling
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert out.read_text() == "my earlier samples\n" and not (tmp_path / "samples.txt.tmp").exists()
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--max-new-tokens", "20", "--seed", "1",
                        "--out", out, cwd=tmp_path)
    assert result.returncode == 0 and out.read_text() == result.stdout


def test_a_leftover_cluster_environment_says_it_is_waiting_instead_of_hanging_silently(prepared):
    environment = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": "29520"}
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY, "--max-iters", "1"], cwd=prepared,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        line = process.stdout.readline()        # the first thing it says, while it waits for rank 1
        assert "waiting for all 2 processes at 127.0.0.1:29520" in line and "unset it to train alone" in line
    finally:
        process.kill()
        process.communicate()


def test_ctrl_c_while_train_py_is_still_starting_is_one_line(prepared):
    process = start_script("train.py", *TINY, "--max-iters", "1000000", cwd=prepared)
    time.sleep(0.8)                             # PyTorch is still loading
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr



# --- a full disk, as the user meets it ------------------------------------------------------------

def run_on_a_full_disk(script, *args, cwd, max_file_bytes):
    """Run a script where no file it writes may grow past max_file_bytes: the kernel refuses the
    write (EFBIG, "File too large") as a full disk refuses it (ENOSPC), so each script meets the
    failure where it really writes, not where a test patched something."""
    resource = pytest.importorskip("resource")

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit_file_size)


def test_a_full_disk_under_prepare_py_leaves_the_earlier_data_whole(prepared, tmp_path):
    before = files_of(prepared / "data")
    bigger = tmp_path / "bigger.txt"
    bigger.write_text(make_text(4000, seed=1), encoding="utf-8")           # ~400k characters
    result = run_on_a_full_disk("prepare.py", "--input", bigger, cwd=prepared, max_file_bytes=100_000)
    assert_one_line_error(result, "File too large")
    assert files_of(prepared / "data") == before


def test_a_full_disk_under_a_resumed_run_keeps_its_checkpoints_as_they_were(prepared):
    assert run_script("train.py", *TINY, "--max-iters", "10", "--eval-interval", "5", cwd=prepared).returncode == 0
    checkpoints = {name: (prepared / "out" / name).read_bytes() for name in ("ckpt.pt", "last.pt")}
    assert min(len(data) for data in checkpoints.values()) > 20_000
    result = run_on_a_full_disk("train.py", *TINY, "--resume", "--max-iters", "20", "--eval-interval", "5",
                                cwd=prepared, max_file_bytes=20_000)
    assert_one_line_error(result, "File too large", "still in out")
    assert {name: (prepared / "out" / name).read_bytes() for name in checkpoints} == checkpoints
    assert not list((prepared / "out").glob("*.tmp"))
    resumed = run_script("train.py", *TINY, "--resume", "--max-iters", "20", "--eval-interval", "5", cwd=prepared)
    assert resumed.returncode == 0, resumed.stderr                          # and the run goes on from there
    fresh = run_on_a_full_disk("train.py", *TINY, "--max-iters", "20", "--out-dir", "fresh", cwd=prepared,
                               max_file_bytes=20_000)
    assert_one_line_error(fresh, "File too large", "no checkpoint was written to fresh")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a file every write to fails")
def test_samples_printed_to_a_full_disk_are_one_line(gpt_checkpoint, tmp_path):
    # `python generate.py > file` on a full disk: /dev/full answers every write with ENOSPC.
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint", str(gpt_checkpoint),
                                 "--max-new-tokens", "50"], cwd=tmp_path, stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=120)
    assert_one_line_error(result, "cannot write the samples", "No space left on device")


def test_a_full_disk_under_generate_out_keeps_the_old_file(gpt_checkpoint, tmp_path):
    out = tmp_path / "samples.txt"
    out.write_text("my earlier samples\n")
    # Ten samples of 600 characters: written in small pieces that the file object buffers, so the
    # failure comes at a flush, and again when the file is closed.
    result = run_on_a_full_disk("generate.py", "--checkpoint", gpt_checkpoint, "--max-new-tokens", "600",
                                "--num-samples", "10", "--out", out, cwd=tmp_path, max_file_bytes=4096)
    assert_one_line_error(result, "cannot write --out", "File too large", "unchanged")
    assert out.read_text() == "my earlier samples\n" and not (tmp_path / "samples.txt.tmp").exists()
