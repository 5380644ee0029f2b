"""train.py: batches, a loss that falls, checkpoints that round-trip, and one-line errors."""

import csv
import math

import numpy as np
import pytest
import torch

import train
from conftest import assert_one_line_error, run_script
from prepare import UserError


def test_get_batch_shapes_and_targets_are_inputs_shifted_by_one():
    data = np.arange(100, dtype=np.uint8)  # id i at position i, so a chunk's start is its first id
    torch.manual_seed(0)
    x, y = train.get_batch(data, batch_size=4, block_size=8, device=torch.device("cpu"))
    assert x.shape == (4, 8) and y.shape == (4, 8)
    assert x.dtype == torch.long and y.dtype == torch.long
    for row_x, row_y in zip(x, y):
        start = row_x[0].item()
        assert row_x.tolist() == list(range(start, start + 8))
        assert row_y.tolist() == list(range(start + 1, start + 9))


def test_training_lowers_the_loss_and_logs_it(prepared):
    best = train.train(train.parse_args([
        "--model", "bigram", "--max-iters", "300", "--eval-interval", "100", "--eval-iters", "20",
        "--device", "cpu", "--data-dir", str(prepared / "data"), "--out-dir", str(prepared / "out")]))
    with open(prepared / "out" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in rows] == [0, 100, 200, 300]
    first, last = float(rows[0]["val_loss"]), float(rows[-1]["val_loss"])
    vocab_size = len(torch.load(prepared / "out" / "ckpt.pt", weights_only=True)["vocab"])
    assert abs(first - math.log(vocab_size)) < 0.05
    assert last < first - 1.0
    assert round(best, 4) == min(float(r["val_loss"]) for r in rows)


def test_checkpoint_loads_with_weights_only_and_gives_identical_logits(bigram_checkpoint):
    checkpoint = torch.load(bigram_checkpoint, weights_only=True)
    assert checkpoint["model_args"] == {"model": "bigram", "vocab_size": len(checkpoint["vocab"])}
    assert isinstance(checkpoint["vocab"], str) and isinstance(checkpoint["iter_num"], int)
    assert isinstance(checkpoint["best_val_loss"], float) and checkpoint["iter_num"] == 300

    _, model = train.load_checkpoint(str(bigram_checkpoint), torch.device("cpu"))
    original = train.build_model(checkpoint["model_args"])
    original.load_state_dict(checkpoint["model"])
    idx = torch.randint(len(checkpoint["vocab"]), (2, 16))
    assert torch.equal(model(idx)[0], original.eval()(idx)[0])

    # Saving the loaded model again gives back exactly the same weights.
    path = str(bigram_checkpoint.parent / "again.pt")
    train.save_checkpoint(path, {**checkpoint, "model": model.state_dict()})
    again = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(again[k], v) for k, v in checkpoint["model"].items())


def test_unprepared_data_is_one_line(tmp_path):
    assert_one_line_error(run_script("train.py", "--model", "bigram", cwd=tmp_path), "python prepare.py")


def test_block_size_longer_than_the_data_is_one_line(prepared):
    result = run_script("train.py", "--model", "bigram", "--block-size", "100000", cwd=prepared)
    assert_one_line_error(result, "--block-size 100000")


def test_zero_or_negative_sizes_are_one_line(prepared):
    for flag, value in [("--batch-size", "0"), ("--block-size", "-3"), ("--max-iters", "0"),
                        ("--learning-rate", "-1e-3"), ("--eval-iters", "many")]:
        assert_one_line_error(run_script("train.py", "--model", "bigram", flag, value, cwd=prepared), flag)


def test_numbers_that_are_not_finite_are_one_line(prepared):
    for flag, value in [("--learning-rate", "nan"), ("--dropout", "nan"), ("--min-lr", "inf")]:
        assert_one_line_error(run_script("train.py", flag, value, cwd=prepared), flag)


def test_unwritable_out_dir_is_one_line(prepared):
    (prepared / "a_file").write_text("not a folder")
    result = run_script("train.py", "--model", "bigram", "--out-dir", prepared / "a_file" / "out", cwd=prepared)
    assert_one_line_error(result, "--out-dir")


def test_asking_for_a_missing_gpu_is_one_line(prepared):
    if torch.cuda.is_available():
        return  # the machine has one; nothing to refuse
    assert_one_line_error(run_script("train.py", "--model", "bigram", "--device", "cuda", cwd=prepared), "CUDA")


# --- the GPT: recipes, schedule, optimizer groups, resume, interruption --------------------------

TINY_GPT = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "8",
            "--eval-iters", "5", "--device", "cpu", "--dtype", "float32", "--warmup-iters", "5"]


def test_without_flags_a_cpu_machine_gets_the_cpu_recipe_and_flags_override_it():
    args = train.parse_args(["--device", "cpu", "--n-layer", "2"])
    train.fill_in_hyperparameters(args)
    assert args.model == "gpt" and args.preset == "cpu"
    assert args.n_layer == 2 and args.n_embd == train.PRESETS["cpu"]["n_embd"]
    assert args.lr_decay_iters == args.max_iters

    args = train.parse_args(["--preset", "lecture", "--device", "cpu"])
    train.fill_in_hyperparameters(args)
    assert (args.batch_size, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout,
            args.max_iters) == (64, 256, 6, 6, 384, 0.2, 5000)


def test_learning_rate_warms_up_then_decays_along_a_cosine_to_min_lr():
    lr = [train.get_lr(i, 1e-3, 1e-4, warmup_iters=10, lr_decay_iters=110) for i in range(120)]
    assert lr[0] == 1e-4 and lr[9] == 1e-3                         # linear warmup to the peak
    assert abs(lr[60] - (1e-4 + 1e-3) / 2) < 1e-12                 # halfway down the cosine
    assert lr[110] == lr[119] == 1e-4                              # then flat at min_lr
    assert all(a >= b for a, b in zip(lr[9:], lr[10:]))            # never rising after the peak


def test_weight_decay_applies_to_matrices_only():
    from gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    decay, no_decay = train.configure_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_gpt_training_lowers_the_loss(prepared):
    best = train.train(train.parse_args(TINY_GPT + [
        "--max-iters", "150", "--eval-interval", "50", "--learning-rate", "3e-3",
        "--data-dir", str(prepared / "data"), "--out-dir", str(prepared / "out")]))
    with open(prepared / "out" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["val_loss"]) > 3.5 and best < 2.5
    _, model = train.load_checkpoint(str(prepared / "out" / "ckpt.pt"), torch.device("cpu"))
    assert model.block_size == 16 and model.config.n_layer == 1


def test_resume_continues_exactly_where_it_stopped(prepared):
    # Dropout on, so the random state must be restored too, not only weights and optimizer.
    common = TINY_GPT + ["--dropout", "0.1", "--eval-interval", "10", "--lr-decay-iters", "40",
                         "--data-dir", str(prepared / "data")]
    train.train(train.parse_args(common + ["--max-iters", "40", "--out-dir", str(prepared / "straight")]))
    train.train(train.parse_args(common + ["--max-iters", "20", "--out-dir", str(prepared / "halves")]))
    train.train(train.parse_args(["--resume", "--max-iters", "40", "--device", "cpu",
                                  "--out-dir", str(prepared / "halves")]))

    straight = torch.load(prepared / "straight" / "last.pt", weights_only=True)
    halves = torch.load(prepared / "halves" / "last.pt", weights_only=True)
    assert straight["iter_num"] == halves["iter_num"] == 40
    for name, weight in straight["model"].items():
        assert torch.equal(weight, halves["model"][name]), name

    def losses(folder):
        with open(prepared / folder / "log.csv", newline="") as f:
            return [(r["iter"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(f)]
    assert losses("straight") == losses("halves")


# --- number formats: float16 with a loss scaler, and what auto picks where ---------------------

def test_auto_dtype_gives_pre_ampere_gpus_float16_and_ampere_ones_bfloat16(monkeypatch):
    monkeypatch.setattr(train, "autocast_works", lambda device, dtype: True)   # as on a machine that has them
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))   # a T4
    dtype, why = train.pick_dtype("auto", cuda)
    assert dtype == torch.float16 and "compute capability 7.5" in why and "loss scaler" in why
    with pytest.raises(UserError, match="compute capability 7.5.*--dtype float16"):
        train.pick_dtype("bfloat16", cuda)                        # emulated bfloat16 is refused, not slow
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))   # an A100
    dtype, why = train.pick_dtype("auto", cuda)
    assert dtype == torch.bfloat16 and "compute capability 8.0" in why
    dtype, why = train.pick_dtype("auto", torch.device("mps"))
    assert dtype == torch.float16 and "Apple" in why


def test_a_number_format_pytorch_cannot_compute_here_is_refused_or_avoided(monkeypatch):
    assert train.autocast_works(torch.device("cpu"), torch.float16)   # PyTorch does float16 on a CPU
    monkeypatch.setattr(train, "autocast_works", lambda device, dtype: False)
    with pytest.raises(UserError, match="cannot compute in float16 on cpu; use --dtype float32"):
        train.pick_dtype("float16", torch.device("cpu"))
    dtype, why = train.pick_dtype("auto", torch.device("mps"))    # auto falls back and says why
    assert dtype == torch.float32 and "cannot compute in float16" in why


def test_float16_trains_and_resumes_exactly_with_its_loss_scale(prepared):
    common = TINY_GPT + ["--dtype", "float16", "--dropout", "0.1", "--eval-interval", "10",
                         "--lr-decay-iters", "40", "--learning-rate", "3e-3", "--data-dir", str(prepared / "data")]
    train.train(train.parse_args(common + ["--max-iters", "40", "--out-dir", str(prepared / "straight")]))
    train.train(train.parse_args(common + ["--max-iters", "20", "--out-dir", str(prepared / "halves")]))
    train.train(train.parse_args(["--resume", "--max-iters", "40", "--out-dir", str(prepared / "halves")]))
    straight = torch.load(prepared / "straight" / "last.pt", weights_only=True)
    halves = torch.load(prepared / "halves" / "last.pt", weights_only=True)
    assert straight["config"]["dtype"] == halves["config"]["dtype"] == "float16"
    assert straight["scaler"]["scale"] > 0 and straight["scaler"] == halves["scaler"]
    for name, weight in straight["model"].items():
        assert torch.equal(weight, halves["model"][name]), name
    with open(prepared / "straight" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"]) - 0.5   # it learns


def test_float16_steps_the_scaler_skips_do_not_stop_the_run(prepared, monkeypatch, capsys):
    # A first scale of 2**40 overflows float16's range (65504), so the first steps are skipped
    # and the scale halved each time until the gradients fit.
    scaler = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, **kw: scaler(device, init_scale=2.0**40, **kw))
    train.train(train.parse_args(TINY_GPT + ["--dtype", "float16", "--max-iters", "40", "--eval-interval", "20",
                                             "--data-dir", str(prepared / "data"), "--out-dir", str(prepared / "out")]))
    skipped = int(capsys.readouterr().out.split("the loss scaler skipped ")[1].split()[0])
    assert skipped >= 10                                         # 2**40 down to 2**16 or less
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == 40


def test_float16_a_loss_that_stays_infinite_stops_with_one_line(prepared):
    result = run_script("train.py", *TINY_GPT, "--dtype", "float16", "--learning-rate", "1e30", "--grad-clip", "0",
                        "--warmup-iters", "0", "--max-iters", "200", "--eval-interval", "1000", cwd=prepared)
    assert_one_line_error(result, "the loss became", "last good state")


# --- Muon, and runs that end on time -------------------------------------------------------------

def test_muon_takes_the_blocks_weight_matrices_and_adamw_the_rest():
    from gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    optimizer = train.configure_optimizer(model, 1e-3, 0.1, "muon", muon_lr_scale=2.0)
    muon, adamw = optimizer.optimizers["muon"], optimizer.optimizers["adamw"]
    in_muon = [p for group in muon.param_groups for p in group["params"]]
    # Per block: the attention's query-key-value and output matrices, the feed-forward's two.
    assert len(in_muon) == 2 * 4 and all(p.dim() == 2 for p in in_muon)
    assert muon.param_groups[0]["lr_scale"] == 2.0 and muon.param_groups[0]["weight_decay"] == 0.1
    decay, no_decay = adamw.param_groups                       # embeddings and head; biases and gains
    assert {tuple(p.shape) for p in decay["params"]} == {(10, 16), (8, 16)} and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(in_muon) + len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert len(optimizer.param_groups) == 3


def test_muon_trains_and_resumes_exactly(prepared):
    common = TINY_GPT + ["--optimizer", "muon", "--dropout", "0.1", "--eval-interval", "10",
                         "--lr-decay-iters", "40", "--data-dir", str(prepared / "data")]
    train.train(train.parse_args(common + ["--max-iters", "40", "--out-dir", str(prepared / "straight")]))
    train.train(train.parse_args(common + ["--max-iters", "20", "--out-dir", str(prepared / "halves")]))
    train.train(train.parse_args(["--resume", "--max-iters", "40", "--out-dir", str(prepared / "halves")]))
    straight = torch.load(prepared / "straight" / "last.pt", weights_only=True)
    halves = torch.load(prepared / "halves" / "last.pt", weights_only=True)
    assert set(straight["optimizer"]) == {"muon", "adamw"}
    for name, weight in straight["model"].items():
        assert torch.equal(weight, halves["model"][name]), name
    with open(prepared / "straight" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"]) - 0.5


def test_resuming_with_another_optimizer_is_one_line(prepared):
    assert run_script("train.py", *TINY_GPT, "--optimizer", "adamw", "--max-iters", "5", cwd=prepared).returncode == 0
    assert_one_line_error(run_script("train.py", "--resume", "--optimizer", "muon", "--max-iters", "10",
                                     cwd=prepared), "--optimizer adamw")


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "sgd"], "--optimizer"),
    (["--time-budget", "0"], "--time-budget"),
    (["--time-budget", "nan"], "--time-budget"),
    (["--time-budget", "ten"], "--time-budget"),
    (["--muon-lr-scale", "-1"], "--muon-lr-scale"),
    (["--max-iters", "10", "--time-budget", "1"], "give one"),
    (["--model", "bigram", "--optimizer", "muon"], "--optimizer is for --model gpt"),
])
def test_bad_optimizer_and_time_budget_flags_are_one_line(prepared, flags, message):
    assert_one_line_error(run_script("train.py", *flags, cwd=prepared), message)


def test_a_time_budget_stops_on_time_and_a_resume_counts_the_time_spent(prepared):
    result = run_script("train.py", *TINY_GPT, "--time-budget", "0.05", "--eval-interval", "100000", cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert "(time budget 0.05 min)" in result.stdout.splitlines()[-1]
    first = torch.load(prepared / "out" / "last.pt", weights_only=True)
    assert 3.0 <= first["elapsed_s"] < 3.0 + 2.0 and first["iter_num"] > 10      # 0.05 minutes = 3 s
    with open(prepared / "out" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in rows] == [0, first["iter_num"]]              # evaluated at the end
    # Resumed with a budget of 6 s in all, it trains about 3 s more, not 6.
    result = run_script("train.py", "--resume", "--time-budget", "0.1", cwd=prepared)
    assert result.returncode == 0, result.stderr
    second = torch.load(prepared / "out" / "last.pt", weights_only=True)
    assert 6.0 <= second["elapsed_s"] < 6.0 + 2.0 and second["iter_num"] > first["iter_num"]


def test_with_a_time_budget_the_schedule_follows_the_share_of_time_used():
    import types
    args = types.SimpleNamespace(time_budget=2.0, lr_decay_iters=1000)      # 2 minutes
    for seconds, position in ((0, 0), (30, 250), (60, 500), (120, 1000), (150, 1000)):
        run = types.SimpleNamespace(args=args, now=seconds)                  # as finished() read the clock
        assert train.Run.schedule_step(run, iter_num=7) == position
    args.time_budget = None                                                   # by step, as without a budget
    assert train.Run.schedule_step(types.SimpleNamespace(args=args), iter_num=7) == 7


def test_a_fixed_max_iters_overrides_a_recipes_time_budget(monkeypatch):
    monkeypatch.setitem(train.PRESETS, "cpu", {**train.PRESETS["cpu"], "time_budget": 9.5})
    args = train.parse_args(["--device", "cpu"])
    train.fill_in_hyperparameters(args)
    assert args.time_budget == 9.5
    args = train.parse_args(["--device", "cpu", "--max-iters", "300"])
    train.fill_in_hyperparameters(args)
    assert args.time_budget is None and args.max_iters == 300 and args.lr_decay_iters == 300


def test_ckpt_holds_the_best_evaluations_weights_and_last_the_state_to_resume(prepared, monkeypatch):
    # Validation scores scripted to improve, then get worse: 3.0 at step 0, 2.0 at 10, 2.5 at 20.
    scores = iter([3.0, 2.0, 2.5])
    monkeypatch.setattr(train, "estimate_loss", lambda *a, **k: {"train": 1.0, "val": next(scores)})
    common = TINY_GPT + ["--eval-interval", "10", "--lr-decay-iters", "20", "--data-dir", str(prepared / "data")]
    best = train.train(train.parse_args(common + ["--max-iters", "20", "--out-dir", str(prepared / "run")]))
    assert best == 2.0
    ckpt = torch.load(prepared / "run" / "ckpt.pt", weights_only=True)
    last = torch.load(prepared / "run" / "last.pt", weights_only=True)
    assert (ckpt["iter_num"], ckpt["best_val_loss"]) == (10, 2.0)     # the best evaluation's step and score
    assert (last["iter_num"], last["best_val_loss"]) == (20, 2.0)     # the end of the run
    assert "optimizer" not in ckpt and "optimizer" in last
    # ckpt.pt's weights are those of step 10: a run stopped there has exactly them.
    monkeypatch.setattr(train, "estimate_loss", lambda *a, **k: {"train": 1.0, "val": 3.0})
    train.train(train.parse_args(common + ["--max-iters", "10", "--out-dir", str(prepared / "short")]))
    at_step_10 = torch.load(prepared / "short" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ckpt["model"][k], at_step_10[k]) for k in at_step_10)
    assert not all(torch.equal(last["model"][k], at_step_10[k]) for k in at_step_10)


def test_the_run_ends_by_saying_which_file_holds_what(prepared):
    result = run_script("train.py", *TINY_GPT, "--max-iters", "20", "--eval-interval", "10", cwd=prepared)
    assert result.returncode == 0, result.stderr
    best_line, last_line = result.stdout.strip().splitlines()[-2:]
    assert best_line.startswith("best val loss ") and "out/ckpt.pt, the weights generate.py samples" in best_line
    assert last_line.startswith("last step 20: out/last.pt, the state --resume continues from")
    assert "out/log.csv" in last_line


def test_resume_without_a_saved_run_is_one_line(prepared):
    assert_one_line_error(run_script("train.py", "--resume", cwd=prepared), "nothing to resume", "out/last.pt")


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(prepared):
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT
    command = [sys.executable, str(ROOT / "train.py"), *TINY_GPT, "--max-iters", "100000",
               "--eval-interval", "50"]
    process = subprocess.Popen(command, cwd=prepared, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (prepared / "out" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted at step" in stdout
    step = int(stdout.split("interrupted at step ")[1].split()[0])
    assert 0 < step < 100000
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == step

    result = run_script("train.py", "--resume", "--max-iters", str(step + 10), cwd=prepared)
    assert result.returncode == 0, result.stderr
    assert f"resuming from out/last.pt at step {step}" in result.stdout
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == step + 10


def test_a_loss_that_explodes_stops_with_one_line_and_keeps_the_last_good_checkpoint(prepared):
    result = run_script("train.py", *TINY_GPT, "--learning-rate", "1e30", "--grad-clip", "0",
                        "--warmup-iters", "0", "--max-iters", "200", "--eval-interval", "1000", cwd=prepared)
    assert_one_line_error(result, "the loss became", "last good state")
    assert torch.load(prepared / "out" / "ckpt.pt", weights_only=True)["iter_num"] == 0


def test_gpt_flags_with_the_bigram_are_one_line(prepared):
    assert_one_line_error(run_script("train.py", "--model", "bigram", "--n-layer", "2", cwd=prepared), "--n-layer")


def test_n_embd_must_divide_into_heads(prepared):
    assert_one_line_error(run_script("train.py", "--n-embd", "30", "--n-head", "4", cwd=prepared), "multiple")


def test_resume_against_another_vocabulary_is_one_line(prepared, bigram_checkpoint):
    (prepared / "out").mkdir()
    (prepared / "out" / "last.pt").write_bytes((bigram_checkpoint.parent / "last.pt").read_bytes())
    other = prepared / "other.txt"
    other.write_text("an entirely different text, with other letters: XYZ 123\n" * 50, encoding="utf-8")
    import prepare
    prepare.prepare(str(other), str(prepared / "data"), 0.1)
    result = run_script("train.py", "--resume", "--data-dir", "data", cwd=prepared)
    assert_one_line_error(result, "another vocabulary")


def test_plot_draws_both_curves_from_the_log(prepared):
    (prepared / "run").mkdir()
    (prepared / "run" / "log.csv").write_text(
        "iter,train_loss,val_loss,elapsed_s\n0,4.2,4.2,0\n100,2.0,2.1,1\n200,1.5,1.8,2\n300,1.2,1.9,3\n")
    result = run_script("train.py", "--plot", "run", cwd=prepared)
    assert result.returncode == 0, result.stderr
    chart = result.stdout.splitlines()
    assert len(chart) == 16 + 3 and "best val 1.8000" in chart[-1]
    assert any("." in line.split("|")[1] for line in chart[:16]) and any("o" in line for line in chart[:16])
    # Overfitting shows: at the right edge val (o) sits above train (.)
    right = [line.split("|")[1][-1] for line in chart[:16]]
    assert right.index("o") < right.index(".")


def test_plot_of_a_missing_run_is_one_line(tmp_path):
    assert_one_line_error(run_script("train.py", "--plot", "nowhere", cwd=tmp_path), "cannot draw")


def test_two_processes_train_with_ddp_and_rank_0s_checkpoint_samples(prepared):
    import subprocess
    import sys
    from conftest import ROOT
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               str(ROOT / "train.py"), *TINY_GPT, "--max-iters", "30", "--eval-interval", "10"]
    result = subprocess.run(command, cwd=prepared, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stdout and result.stdout.count("best val loss") == 1  # rank 0 alone reports
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["iter_num"] == 30
    for name in ("ckpt.pt", "last.pt"):
        checkpoint = torch.load(prepared / "out" / name, weights_only=True)
        assert not any(k.startswith(("module.", "_orig_mod.")) for k in checkpoint["model"]), name
    sample = run_script("generate.py", "--seed", "0", "--max-new-tokens", "50", cwd=prepared)
    assert sample.returncode == 0 and len(sample.stdout) == 1 + 50 + 1, sample.stderr


def test_two_processes_with_a_time_budget_stop_at_the_same_step(prepared):
    import subprocess
    import sys
    from conftest import ROOT
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
               str(ROOT / "train.py"), *TINY_GPT, "--time-budget", "0.05", "--optimizer", "muon"]
    result = subprocess.run(command, cwd=prepared, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]          # no rank left waiting for the other
    assert "(time budget 0.05 min)" in result.stdout


def test_float16_and_muon_train_together(prepared):
    best = train.train(train.parse_args(TINY_GPT + ["--dtype", "float16", "--optimizer", "muon", "--max-iters", "30",
                                                    "--eval-interval", "15", "--data-dir", str(prepared / "data"),
                                                    "--out-dir", str(prepared / "out")]))
    with open(prepared / "out" / "log.csv", newline="") as f:
        first = float(next(csv.DictReader(f))["val_loss"])
    assert best < first - 0.3                                                   # it learns
    assert torch.load(prepared / "out" / "last.pt", weights_only=True)["scaler"]["scale"] > 0
