"""train.py's protection: each machine's settings, exact resumes, whole files, one-line errors, the plot."""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import generate
import train
from conftest import (ROOT, TINY, assert_one_line_error, make_text, prepare_text, read_log, run_script, saved,
                      small_gpt, train_here)
from gpt import GPT, GPTConfig


# --- each machine's settings, number format and progress bar --------------------------------------

def test_without_flags_a_cpu_machine_gets_the_cpu_recipe_and_flags_override_it(monkeypatch):
    args, *_ = train.parse_args(["--device", "cpu", "--n-layer", "2"])
    assert (args.model, args.preset, args.n_layer, args.optimizer) == ("gpt", "cpu", 2, "muon")
    assert args.n_embd is None   # the sizes not given: fitted to the machine when the run starts
    assert args.max_iters == 1100 and train.parse_args(["--optimizer", "adamw"])[0].optimizer == "adamw"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # a GPU: the lecture's model, unless told
    assert [train.parse_args(flags)[0].preset for flags in ([], ["--device", "cpu"])] == ["lecture", "cpu"]
    args, *_ = train.parse_args(["--preset", "lecture", "--device", "cpu"])
    assert (args.batch_size, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout,
            args.max_iters) == (64, 256, 6, 6, 384, 0.2, 5000)
    assert (args.rope, args.tie_weights, args.activation, args.qk_norm) == (False, False, "relu", False)
    args, *_ = train.parse_args(["--max-iters", "30"])     # a fixed number of steps replaces the time budget
    assert args.time_budget is None and args.max_iters == 30


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_cpu_recipe_takes_the_row_its_budget_buys_on_the_reference_cpu(monkeypatch, dtype):
    """A machine k times slower than the reference, given T minutes, gets the row fitted nearest T / k."""
    reference_ms, rows = train.CPU_FITS[dtype]
    cpu, one, step_ms = torch.device("cpu"), argparse.Namespace(size=1), train.step_ms
    for k, budget, row in ((1, 1.5, 1.5), (1, 9.5, 10), (4, 9.5, 1.5), (0.25, 3, 10)):
        monkeypatch.setattr(train, "step_ms", lambda settings, device, dtype: reference_ms * k)
        args, *_ = train.parse_args(["--device", "cpu", "--time-budget", str(budget)])
        assert f"the {row:g}-minute row (a step of" in train.fit_to_machine(args, cpu, dtype, one)
        assert all(getattr(args, name) == value for name, value in rows[row].items())
    args, *_ = train.parse_args(["--device", "cpu", "--max-iters", "5"])   # no budget: the 10-minute row
    assert "10-minute row" in train.fit_to_machine(args, cpu, dtype, one)
    assert args.n_embd == rows[10]["n_embd"]
    args, *_ = train.parse_args(["--device", "cpu", "--time-budget", "1.5", "--n-embd", "64"])   # told
    train.fit_to_machine(args, cpu, dtype, one)
    assert args.n_embd == 64 and args.n_layer == rows[10]["n_layer"]
    assert step_ms(rows[1.5], cpu, dtype, steps=1) > 0   # the probe itself runs


def test_the_number_format_follows_the_hardware_and_says_why(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))   # a T4
    assert train.pick_dtype("auto", cuda) == (torch.float16, "compute capability 7.5 has no bfloat16 "
                                                             "hardware; with a scaler")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 0))   # an A100
    assert train.pick_dtype("auto", cuda)[0] == torch.bfloat16
    assert train.pick_dtype("auto", torch.device("mps"))[0] == torch.float16
    for has_it, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(train, "CPU_BFLOAT16", has_it)
        assert train.pick_dtype("auto", torch.device("cpu"))[0] == dtype
    assert train.pick_dtype("float16", torch.device("cpu")) == (torch.float16, "--dtype float16")


def test_under_cpu_autocast_the_layer_norms_and_the_loss_stay_float32(monkeypatch):
    """What pick_dtype's docstring in train.py says of autocast: layer norms and the loss stay float32."""
    from torch.nn import functional as F
    seen = []
    softmax = F.softmax
    monkeypatch.setattr(F, "softmax", lambda x, dim: seen.append(("softmax", x.dtype)) or softmax(x, dim=dim))
    explicit = small_gpt(fused_attention=False)
    for module in explicit.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.register_forward_hook(
                lambda module, inputs, output: seen.append(("layer norm", output.dtype)))
    idx = torch.randint(65, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = explicit(idx, idx)
    # The layer norms read the float32 stream; the softmax reads a bfloat16 product.
    assert {dtype for kind, dtype in seen if kind == "layer norm"} == {torch.float32}
    assert {dtype for kind, dtype in seen if kind == "softmax"} == {torch.bfloat16}
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32


def test_the_progress_bar_shows_in_a_terminal_and_stays_out_of_files_and_other_ranks(monkeypatch):
    args, *_ = train.parse_args(["--max-iters", "30"])
    rank0, rank1 = (argparse.Namespace(size=2, rank=r, local=r, master=r == 0) for r in (0, 1))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with train.progress_bar(args, 10, rank0) as bar, train.progress_bar(args, 10, rank1) as other:
        assert not bar.disable and (bar.n, bar.total) == (10, 30) and other.disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with train.progress_bar(args, 10, rank0) as bar:
        assert bar.disable


# --- saving, resuming, and the machinery the loop leans on ------------------------------------------

def test_ckpt_holds_the_best_evaluations_weights_and_last_the_state_to_resume(prepared, monkeypatch, capsys):
    val_losses = iter([3.0, 2.0, 2.5])    # steps 0, 10, 20: the best is at step 10
    monkeypatch.setattr(train, "estimate_loss", lambda *a: {"train": 1.0, "val": next(val_losses)})
    train_here(prepared, *TINY, "--max-iters", "20", "--eval-interval", "10")
    best, last = saved(prepared / "out" / "ckpt.pt"), saved(prepared / "out" / "last.pt")
    assert ((best["iter_num"], best["best_val_loss"], last["iter_num"], last["best_val_loss"])
            == (10, 2.0, 20, 2.0))
    assert "optimizers" not in best and "optimizers" in last
    out = capsys.readouterr().out
    assert "best val loss 2.0000: " in out and "last step 20: " in out and "step    train      val" in out


@pytest.mark.parametrize("flags", [["--optimizer", "adamw"], ["--optimizer", "muon", "--dtype", "float16"]])
def test_a_run_stopped_by_ctrl_c_and_resumed_ends_exactly_where_the_unbroken_run_ends(prepared, flags,
                                                                                       monkeypatch):
    """With dropout on: the random state, the optimisers and float16's loss scale must all come back."""
    common = [*TINY, *flags, "--dropout", "0.1", "--eval-interval", "10", "--max-iters", "40"]
    train_here(prepared, *common, "--out-dir", prepared / "straight")
    batches, get_batch = [], train.get_batch

    def ctrl_c_in_step_17(*batch_args):   # between two evaluations; their batches have a generator
        batches.append(batch_args[-1] is None)
        if batches.count(True) == 17 and batch_args[-1] is None:
            os.kill(os.getpid(), signal.SIGINT)
        return get_batch(*batch_args)
    monkeypatch.setattr(train, "get_batch", ctrl_c_in_step_17)
    with pytest.raises(SystemExit, match="130"):
        train_here(prepared, *common, "--out-dir", prepared / "halves")
    assert saved(prepared / "halves" / "last.pt")["iter_num"] == 17
    monkeypatch.undo()
    train_here(prepared, "--resume", "--out-dir", prepared / "halves")
    straight, halves = saved(prepared / "straight" / "last.pt"), saved(prepared / "halves" / "last.pt")
    assert straight["iter_num"] == halves["iter_num"] == 40 and straight["scaler"] == halves["scaler"]
    for name, weight in straight["model"].items():
        assert torch.equal(weight, halves["model"][name]), name
    assert read_log(prepared / "straight") == [
        {**r, "elapsed_s": s["elapsed_s"]}
        for r, s in zip(read_log(prepared / "halves"), read_log(prepared / "straight"))]


def test_float16_steps_the_scaler_skips_do_not_stop_the_run(prepared, monkeypatch):
    # A first scale of 2**40 overflows float16's range, so the first steps are skipped (their
    # gradients are inf) and the scale is halved each time until the gradients fit.
    scaler = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler",
                        lambda device, **kw: scaler(device, init_scale=2.0**40, **kw))
    train_here(prepared, *TINY, "--dtype", "float16", "--max-iters", "40", "--eval-interval", "20")
    last = saved(prepared / "out" / "last.pt")
    assert last["iter_num"] == 40 and last["scaler"]["scale"] < 2.0**20


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_loss_that_stays_infinite_stops_in_one_line_and_keeps_the_last_good_state(prepared, dtype):
    result = run_script("train.py", *TINY, "--dtype", dtype, "--learning-rate", "1e30", "--grad-clip", "0",
                        "--warmup-iters", "0", "--max-iters", "200", "--eval-interval", "1000", cwd=prepared)
    assert_one_line_error(result, "the loss became", "last good state", "--learning-rate")
    assert saved(prepared / "out" / "last.pt")["iter_num"] == 0


def test_a_time_budget_ends_the_run_on_time_and_a_resume_counts_the_time_spent(prepared):
    train_here(prepared, *TINY, "--time-budget", "0.02", "--eval-interval", "1000000")   # 1.2 seconds
    first = saved(prepared / "out" / "last.pt")
    assert 1.2 <= first["elapsed_s"] < 10 and first["iter_num"] > 0
    train_here(prepared, "--resume", "--time-budget", "0.04")
    second = saved(prepared / "out" / "last.pt")
    assert 2.4 <= second["elapsed_s"] < 20 and second["iter_num"] > first["iter_num"]


def test_a_fresh_run_never_replaces_an_earlier_one_unless_told(prepared):
    train_here(prepared, *TINY, "--max-iters", "10", "--eval-interval", "5")
    (prepared / "out" / "last.pt.tmp").write_bytes(b"half a checkpoint, left by a killed save")
    with pytest.raises(SystemExit, match="already holds a run; continue it with --resume"):
        train_here(prepared, *TINY, "--max-iters", "10")
    assert saved(prepared / "out" / "last.pt")["iter_num"] == 10
    train_here(prepared, *TINY, "--max-iters", "5", "--eval-interval", "5", "--overwrite")
    assert saved(prepared / "out" / "last.pt")["iter_num"] == 5
    assert sorted(os.listdir(prepared / "out")) == ["ckpt.pt", "last.pt", "log.csv"]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_saves_and_says_how_to_resume(prepared, signal_number):
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY, "--max-iters", "1000000",
                                "--eval-interval", "50"], cwd=prepared, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while not (prepared / "out" / "last.pt").exists():
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    assert_one_line_error(run_script("train.py", "--resume", cwd=prepared),
                          "another train.py is running in out/")
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number and "Traceback" not in stderr
    step = int(stdout.split("interrupted at step ")[1].split()[0])
    assert "saved out/last.pt; continue with: python train.py --resume" in stdout
    assert saved(prepared / "out" / "last.pt")["iter_num"] == step > 0
    train_here(prepared, "--resume", "--max-iters", str(step + 5))
    assert saved(prepared / "out" / "last.pt")["iter_num"] == step + 5


def test_sigkill_at_any_moment_leaves_the_old_or_the_new_file_never_a_broken_one(tmp_path):
    loop = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import train\n"
            f"for i in range(1, 10**6):\n"
            f"    train.write_whole({str(tmp_path / 'ckpt')!r}, bytes([i % 256]) * 8_000_000)\n"
            f"    print(i, flush=True)\n")
    for delay in (0.05, 0.1, 0.2, 0.3):
        process = subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE, text=True)
        first = process.stdout.readline()   # one write is complete
        time.sleep(delay)                    # then a few more, the last one cut at a random point
        process.send_signal(signal.SIGKILL)
        completed = len((first + process.communicate()[0]).split())
        data = (tmp_path / "ckpt").read_bytes()
        assert len(data) == 8_000_000 and data == bytes([data[0]]) * 8_000_000    # whole
        assert data[0] in {completed % 256, (completed + 1) % 256}   # the last, or the one in flight


def test_a_full_disk_ends_in_one_line_and_keeps_the_checkpoints_whole(prepared):
    resource = pytest.importorskip("resource")
    train_here(prepared, *TINY, "--max-iters", "10", "--eval-interval", "5")
    before = {name: (prepared / "out" / name).read_bytes() for name in ("ckpt.pt", "last.pt")}

    def no_file_past_20_kb():   # the kernel refuses the write (EFBIG) as a full disk refuses it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", "--max-iters", "20"],
                            cwd=prepared, capture_output=True, text=True, preexec_fn=no_file_past_20_kb)
    assert_one_line_error(result,
                          "cannot write to out/ (File too large); it holds the last whole checkpoints")
    assert {name: (prepared / "out" / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(prepared / "out")) == ["ckpt.pt", "last.pt", "log.csv"]


def test_two_processes_train_with_ddp_and_rank_0s_checkpoint_samples(prepared):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", "29517", str(ROOT / "train.py"), *TINY, "--max-iters", "30",
               "--eval-interval", "10", "--optimizer", "muon"]
    result = subprocess.run(command, cwd=prepared, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # rank 0 alone reports
    assert "2 processes" in result.stdout and result.stdout.count("best val loss") == 1
    assert not any(k.startswith(("module.", "_orig_mod."))
                   for k in saved(prepared / "out" / "ckpt.pt")["model"])
    sample = run_script("generate.py", "--seed", "0", "--max-new-tokens", "50", cwd=prepared)
    assert sample.returncode == 0 and len(sample.stdout) == 1 + 50 + 1, sample.stderr


def test_a_learners_shape_bug_in_gpt_py_shows_pythons_traceback_naming_gpt_py(prepared, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("bigram.py", "gpt.py", "train.py", "prepare.py"):
        shutil.copy(ROOT / name, project / name)
    gpt = (project / "gpt.py").read_text()
    buggy = gpt.replace("nn.Linear(4 * config.n_embd, config.n_embd)",
                        "nn.Linear(4 * config.n_embd - 1, config.n_embd)")
    assert buggy != gpt
    (project / "gpt.py").write_text(buggy)
    result = subprocess.run([sys.executable, str(project / "train.py"), *TINY, "--max-iters", "5"],
                            cwd=prepared, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback (most recent call last)" in result.stderr
    assert f'File "{project / "gpt.py"}"' in result.stderr and "mat1 and mat2 shapes" in result.stderr


# --- every user mistake: one line naming the fix, and the earlier run left as it was ------------------

def make_folder(name, files):
    def setup(folder):
        (folder / name).mkdir()
        for file, content in files(folder).items():
            (folder / name / file).write_bytes(content)
    return setup


def torn(folder):
    shutil.copytree(folder / "data", folder / "torn")
    (folder / "torn" / "train.bin").write_bytes((folder / "data" / "train.bin").read_bytes()[:-10])


def other_text(folder):
    import prepare
    (folder / "other.txt").write_text(make_text() + "€", encoding="utf-8")
    prepare.prepare(str(folder / "other.txt"), str(folder / "other"), 0.1)


class Trap:
    def __reduce__(self):      # unpickling would call print: a stand-in for code a file could run
        return (print, ("this ran",))


def pickled(obj):
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


MISTAKES = [   # (set-up, flags, environment, what the one line says)
    (None, ["--data-dir", "nowhere"], {}, "nowhere/ is not prepared (no vocab.json); run: python prepare.py"),
    (torn, ["--data-dir", "torn"], {}, "torn/ is torn or mismatched"),
    (make_folder("broken", lambda f: {"vocab.json": b"{}"}), ["--data-dir", "broken"], {}, "damaged"),
    (None, ["--model", "bigram", "--block-size", "1000000"], {}, "--block-size 1000000 needs more than"),
    (None, ["--batch-size", "0"], {}, "--batch-size: must be above 0"),
    (None, ["--batch-size", str(2**70)], {}, "--batch-size: must be above 0 and below"),
    (None, ["--n-layer", "-2"], {}, "--n-layer"),
    (None, ["--dropout", "1.5"], {}, "--dropout"),
    (None, ["--learning-rate", "nan"], {}, "--learning-rate"),
    (None, ["--eval-iters", "many"], {}, "--eval-iters: invalid int value: 'many'"),
    (None, ["--seed", str(2**70)], {}, "--seed"),
    (None, ["--optimizer", "sgd"], {}, "--optimizer"),
    (None, ["--n-embd", "30", "--n-head", "4"], {}, "multiple of --n-head"),
    (None, ["--n-embd", "36", "--n-head", "4", "--rope"], {}, "head size --n-embd / --n-head must be even"),
    (None, ["--model", "bigram", "--n-layer", "2"], {}, "--n-layer is a GPT setting"),
    (None, ["--model", "bigram", "--task", "addition"], {}, "--task is a GPT setting"),
    (None, ["--model", "bigram", "--rope"], {}, "--rope is a GPT setting"),
    (None, ["--activation", "tanh"], {}, "--activation: invalid choice: 'tanh'"),
    (None, ["--max-iters", "10", "--time-budget", "1"], {}, "give one"),
    (make_folder("a_file_here", lambda f: {"f": b""}), ["--out-dir", "a_file_here/f/out"], {}, "--out-dir"),
    (None, ["--out-dir", "out"], {}, "out/ already holds a run; continue it with --resume"),
    (None, ["--resume", "--out-dir", "empty"], {}, "no checkpoint at empty/last.pt; train afresh"),
    (None, ["--resume", "--model", "gpt"], {}, "out/last.pt holds a bigram run; resume it without --model"),
    (None, ["--resume", "--optimizer", "muon"], {}, "--optimizer is a GPT setting"),
    (other_text, ["--resume", "--data-dir", "other"], {}, "trained on other data than other/ holds"),
    (make_folder("trap", lambda f: {"last.pt": pickled({"model": Trap()})}),
     ["--resume", "--out-dir", "trap"], {}, "refusing to load trap/last.pt: it holds Python objects"),
    (make_folder("cut", lambda f: {"last.pt": (f / "out" / "last.pt").read_bytes()[:500]}),
     ["--resume", "--out-dir", "cut"], {}, "cut/last.pt is not a readable checkpoint"),
    (make_folder("alien", lambda f: {"last.pt": pickled({"weights": torch.zeros(2)})}),
     ["--resume", "--out-dir", "alien"], {},
     "not a checkpoint of train.py to start from (it has no model, model_args"),
    (None, ["--device", "cuda"], {}, "this machine has no cuda; add --device cpu"),   # CUDA hidden below
    (None, [], {"WORLD_SIZE": "2"}, "start the processes with torchrun, or unset WORLD_SIZE"),
    (None, [], {"WORLD_SIZE": "2", "RANK": "two", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
     "whole numbers"),
]


@pytest.mark.parametrize("setup, flags, environment, message", MISTAKES)
def test_user_mistakes_are_one_line_and_leave_the_earlier_run_as_it_was(
        finished_run, monkeypatch, setup, flags, environment, message):
    if setup:
        setup(finished_run)
    before = {p.name: p.read_bytes() for p in (finished_run / "out").iterdir()}
    monkeypatch.chdir(finished_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # as on a machine without CUDA
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out_dir = [] if "--out-dir" in flags else ["--out-dir", "out" if "--resume" in flags else "fresh"]
    with pytest.raises(SystemExit) as error:
        train.main(["--device", "cpu", *out_dir, *flags])
    assert isinstance(error.value.code, str) and "\n" not in error.value.code, error.value.code
    assert error.value.code.startswith("train.py: error: ") and message in error.value.code, error.value.code
    assert {p.name: p.read_bytes() for p in (finished_run / "out").iterdir()} == before


@pytest.fixture
def finished_run(prepared, bigram_checkpoint):
    """prepared/ with a finished bigram run in out/, trained on the same text."""
    shutil.copytree(bigram_checkpoint.parent, prepared / "out")
    return prepared


def test_out_of_memory_is_one_line_naming_the_flag_to_lower(prepared):
    result = run_script("train.py", *TINY, "--batch-size", "100000000", "--max-iters", "1", cwd=prepared)
    assert_one_line_error(result, "out of memory", "--batch-size")


def test_an_allocation_that_fails_past_the_estimate_is_one_line_too(prepared):
    # The estimate counts activations, not weights: a width of 40,000 passes it, and its first matrix
    # (120,000 x 40,000 floats, 19 GB) is more than 12 GB of address space allows: the CPU allocator's error.
    result = run_script("train.py", *TINY, "--n-embd", "40000", "--max-iters", "1", cwd=prepared,
                        memory_gb=12)
    assert_one_line_error(result, "out of memory", "--n-embd")


def test_without_flock_as_on_windows_a_run_says_so_once_trains_resumes_and_samples(prepared, monkeypatch,
                                                                                    capsys):
    monkeypatch.setitem(sys.modules, "fcntl", None)   # `import fcntl` fails, as it does on Windows
    train_here(prepared, *TINY, "--optimizer", "adamw", "--max-iters", "10", "--eval-interval", "5")
    train_here(prepared, "--resume", "--max-iters", "15")
    printed = capsys.readouterr().out
    assert printed.count("this system cannot lock") == 2 and "step 15:" in printed
    assert saved(prepared / "out" / "last.pt")["iter_num"] == 15
    generate.main(["--checkpoint", str(prepared / "out" / "ckpt.pt"),
                   "--max-new-tokens", "20", "--seed", "0"])
    assert len(capsys.readouterr().out) == 1 + 20 + 1   # the prompt (a newline), 20 characters, a newline


def test_the_end_of_a_run_writes_last_pt_once_at_its_last_evaluation(prepared, monkeypatch):
    writes, write_whole = [], train.write_whole
    monkeypatch.setattr(train, "write_whole",
                        lambda path, data: writes.append(path) or write_whole(path, data))
    train_here(prepared, *TINY, "--optimizer", "adamw", "--max-iters", "20", "--eval-interval", "10")
    assert [os.path.basename(path) for path in writes].count("last.pt") == 3   # steps 0, 10 and 20


# --- exercises 2 and 3: their flags, and checkpoints from elsewhere ----------------------------------

def test_addition_flags_are_checked_and_a_resume_keeps_the_task(adder, monkeypatch):
    args, *_ = train.parse_args(["--task", "addition", "--digits", "10"])
    assert (args.preset, args.block_size) == ("addition", 32)
    for flags, message in [(["--digits", "3"], "--digits is for --task addition"),
                           (["--task", "addition", "--block-size", "8"], "there it sets the block size"),
                           (["--task", "addition", "--digits", "100"], "--digits")]:
        with pytest.raises(SystemExit, match=message):
            train.parse_args(flags)
    monkeypatch.chdir(adder)
    args, saved, _ = train.parse_args(["--resume", "--max-iters", "800"])
    assert (args.task, args.digits, args.block_size, saved["data"]["digits"]) == ("addition", 2, 8, 2)


@pytest.mark.parametrize("flags, message", [
    (["--data-dir", "elsewhere"], "knows other characters than elsewhere/; prepare the text with its "
                                  "vocabulary: python prepare.py --vocab .*/data/vocab.json"),
    (["--n-embd", "64"], "--n-embd 64: out/ckpt.pt has 32"),
    (["--resume"], "give one"),
    (["--init-from", "nothing.pt"], "no checkpoint at nothing.pt"),
    (["--task", "addition"], "--task addition: out/ckpt.pt has text"),
    (["--qk-norm"], "--qk-norm True: out/ckpt.pt has False"),
])
def test_init_from_mistakes_are_one_line(pretrained, monkeypatch, flags, message):
    prepare_text(pretrained, "elsewhere", "abc" * 100)
    monkeypatch.chdir(pretrained)
    with pytest.raises(SystemExit, match=message):
        train.main(["--init-from", "out/ckpt.pt", "--out-dir", "new", "--device", "cpu", "--max-iters", "1",
                    *flags])


def test_a_checkpoint_from_before_the_papers_changes_is_read_as_having_none(pretrained, monkeypatch):
    monkeypatch.setitem(train.RECIPES["cpu"], "rope", True)   # a recipe that would otherwise turn one on
    checkpoint = torch.load(pretrained / "out" / "ckpt.pt", weights_only=True)
    sizes = {k: checkpoint["model_args"][k] for k in ("vocab_size", *train.GPT_ARGS[:5])}
    checkpoint["model"] = GPT(GPTConfig(**sizes)).state_dict()   # the lecture's model, as before the changes
    checkpoint["model_args"] = {"model": "gpt", **sizes}            # which the checkpoint does not name
    torch.save(checkpoint, pretrained / "old.pt")
    model, *_ = generate.load_model(pretrained / "old.pt", torch.device("cpu"))
    assert hasattr(model, "position_embedding_table") and model.config.activation == "relu"
    monkeypatch.chdir(pretrained)
    train.main(["--init-from", "old.pt", "--out-dir", "new", "--device", "cpu", "--max-iters", "1",
                "--eval-iters", "1"])
    assert torch.load("new/last.pt", weights_only=True)["model_args"] == {
        **checkpoint["model_args"], "rope": False, "tie_weights": False, "activation": "relu",
        "qk_norm": False}


def test_a_resume_onto_another_text_with_the_same_characters_points_to_init_from(pretrained, monkeypatch):
    monkeypatch.chdir(pretrained)
    with pytest.raises(SystemExit,
                       match="trained on other data than other/ holds; .* --init-from out/ckpt.pt"):
        train.main(["--resume", "--data-dir", "other", "--max-iters", "200"])


def test_the_plot_draws_both_losses_and_shows_overfitting():
    losses = [(4.2, 4.2), (2.5, 2.6), (2.0, 2.2), (1.6, 1.8), (1.2, 1.9), (1.0, 2.1)]
    chart = train.plot_log([[100 * i, t, v, i, ""] for i, (t, v) in enumerate(losses)]).splitlines()
    assert len(chart) == 1 + 6 and chart[1].split()[:3] == ["0", "4.2000", "4.2000"]
    bars = [line.split("|")[1] for line in chart[2:]]
    # train (.) falls to the left edge; val (o) parts from it
    assert bars[0].index(".") < bars[0].index("o") and bars[-1].index(".") == 0
    gaps = [bar.index("o") - bar.index(".") for bar in bars]
    assert gaps[-1] > gaps[-2] > gaps[1]
