"""train.py's lesson: batches, the optimisers, the schedule, and a loop that makes the loss fall."""

import math

import numpy as np
import torch

import train
from conftest import TINY, read_log, saved, train_here
from gpt import GPT, GPTConfig
from lecture_train import lecture_train


def test_get_batch_shapes_and_targets_are_inputs_shifted_by_one():
    data = np.arange(100, dtype=np.uint8)  # id i at position i, so a chunk's start is its first id
    torch.manual_seed(0)
    x, y = train.get_batch(data, batch_size=4, block_size=8, device=torch.device("cpu"))
    assert x.shape == (4, 8) and y.shape == (4, 8) and x.dtype == y.dtype == torch.long
    for row_x, row_y in zip(x, y):
        start = row_x[0].item()
        assert row_x.tolist() == list(range(start, start + 8))
        assert row_y.tolist() == list(range(start + 1, start + 9))


def test_train_with_its_additions_turned_off_ends_with_the_lectures_loops_weights(prepared, capsys):
    flags = [*TINY, "--no-rope", "--dropout", "0", "--optimizer", "adamw", "--learning-rate", "1e-3",
             "--min-lr", "1e-3", "--warmup-iters", "0", "--weight-decay", "0", "--grad-clip", "0",
             "--max-iters", "30", "--eval-interval", "10"]
    train_here(prepared, *flags)
    ours = saved(prepared / "out" / "last.pt")["model"]
    args, _, _ = train.parse_args(["--data-dir", str(prepared / "data"), *flags])
    data_info, _, eval_batches = train.make_batches(args, torch.device("cpu"))
    train_data, _, _ = train.load_data(args.data_dir, args.block_size)
    torch.manual_seed(args.seed)   # as train() does, before it builds the model
    model = train.build_model(args, data_info["chars"])
    lecture_train(model, train_data, eval_batches, 30, 10, 1e-3, args.batch_size, args.block_size)
    assert "step 20: train loss" in capsys.readouterr().out
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, ours[name]), name


def test_muon_takes_the_blocks_matrices_adamw_the_rest_and_decay_spares_biases_and_gains():
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    [adamw] = train.configure_optimizers(model, "adamw", 1e-3, 0.1)
    decay, no_decay = adamw.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

    muon, adamw = train.configure_optimizers(model, "muon", 1e-3, 0.1, muon_lr_scale=2.0)
    in_muon = muon.param_groups[0]["params"]
    assert len(in_muon) == 2 * 4 and all(p.dim() == 2 for p in in_muon)   # per block: qkv, proj, 2 in ffwd
    assert muon.param_groups[0]["lr_scale"] == 2.0 and muon.param_groups[0]["weight_decay"] == 0.1
    decay, no_decay = adamw.param_groups                                    # embeddings and head; the rest
    assert {tuple(p.shape) for p in decay["params"]} == {(10, 16), (8, 16)}
    assert len(in_muon) + len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_muon_steps_as_torch_muon_does_and_orthogonalizes_in_float32_as_in_bfloat16():
    torch.manual_seed(0)
    weights, grads = torch.randn(96, 64), [torch.randn(96, 64) for _ in range(3)]
    ours, theirs = torch.nn.Parameter(weights.clone()), torch.nn.Parameter(weights.clone())
    steps = [train.Muon([ours], lr=0.02, weight_decay=0.1),
             torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")]
    for grad in grads:
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        for optimizer in steps:
            optimizer.step()
    moved = (theirs - weights).abs().max()
    assert (ours - theirs).abs().max() < 0.05 * moved   # the same steps, up to bfloat16's rounding
    G = torch.randn(128, 48) @ torch.diag(torch.logspace(-1, 0, 48))   # singular values 0.1x to 1x apart
    in_float32, in_bfloat16 = train.orthogonalize(G), train.orthogonalize(G.bfloat16()).float()
    singular_values = torch.linalg.svdvals(in_float32)
    assert singular_values.min() > 0.5 and singular_values.max() < 1.5
    assert (in_float32 - in_bfloat16).norm() < 0.05 * in_float32.norm()   # the same, to bfloat16's rounding


def test_learning_rate_warms_up_then_decays_along_a_cosine_to_min_lr():
    lr = [train.get_lr(i, 1e-3, 1e-4, warmup_iters=10, max_iters=110) for i in range(120)]
    assert lr[0] == 1e-4 and lr[9] == 1e-3                         # linear warmup to the peak
    assert abs(lr[60] - (1e-4 + 1e-3) / 2) < 1e-12                 # halfway down the cosine
    assert lr[110] == lr[119] == 1e-4                              # then flat at min_lr
    assert all(a >= b for a, b in zip(lr[9:], lr[10:]))            # never rising after the peak


def test_the_bigram_learns_and_every_evaluation_is_logged(prepared):
    best = train_here(prepared, "--model", "bigram", "--max-iters", "300", "--eval-interval", "100",
                      "--eval-iters", "20", "--device", "cpu")
    rows = read_log(prepared / "out")
    assert [int(r["iter"]) for r in rows] == [0, 100, 200, 300]
    first, last = float(rows[0]["val_loss"]), float(rows[-1]["val_loss"])
    assert abs(first - math.log(len(saved(prepared / "out" / "ckpt.pt")["vocab"]))) < 0.05
    assert last < first - 1.0 and round(best, 4) == min(float(r["val_loss"]) for r in rows)


def test_the_gpt_learns_and_its_checkpoint_holds_plain_values_only(prepared):
    best = train_here(prepared, *TINY, "--max-iters", "150", "--eval-interval", "50",
                      "--learning-rate", "3e-3")
    assert float(read_log(prepared / "out")[0]["val_loss"]) > 3.5 and best < 2.5
    checkpoint = saved(prepared / "out" / "ckpt.pt")   # weights_only: tensors, numbers, strings, dicts
    assert checkpoint["model_args"] == {
        "model": "gpt", "vocab_size": len(checkpoint["vocab"]), "block_size": 16, "n_layer": 1, "n_head": 2,
        "n_embd": 32, "dropout": 0.0, "rope": True, "tie_weights": False, "activation": "relu",
        "qk_norm": False}
    assert checkpoint["best_val_loss"] == best


def test_each_evaluation_shows_a_sample_drawn_the_same_way_without_touching_training(prepared, capsys):
    train_here(prepared, *TINY, "--optimizer", "adamw", "--max-iters", "20", "--eval-interval", "10")
    lines = capsys.readouterr().out.splitlines()
    samples = [line for line in lines if line.startswith("sample: ")]
    assert len(samples) == 3 and all(lines[lines.index(s) - 1].startswith("step ") for s in samples)
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = train.sample_text(model, "\nabcd", torch.device("cpu"), length=30)
    assert torch.equal(torch.get_rng_state(), before)                    # training's stream untouched
    assert first == train.sample_text(model, "\nabcd", torch.device("cpu"), length=30) and len(first) == 30
