"""train.py: batches, a loss that falls, checkpoints that round-trip, and one-line errors."""

import csv
import math

import numpy as np
import torch

import train
from conftest import assert_one_line_error, run_script


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


def test_unwritable_out_dir_is_one_line(prepared):
    (prepared / "a_file").write_text("not a folder")
    result = run_script("train.py", "--model", "bigram", "--out-dir", prepared / "a_file" / "out", cwd=prepared)
    assert_one_line_error(result, "--out-dir")


def test_asking_for_a_missing_gpu_is_one_line(prepared):
    if torch.cuda.is_available():
        return  # the machine has one; nothing to refuse
    assert_one_line_error(run_script("train.py", "--model", "bigram", "--device", "cuda", cwd=prepared), "CUDA")
