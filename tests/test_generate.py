"""generate.py: seeded sampling, agreement with the models' own generate(), and one-line errors."""

import os
import pickle

import torch

import generate
import train
from conftest import assert_one_line_error, run_script


def test_same_seed_prints_the_same_text_and_another_seed_does_not(bigram_checkpoint, tmp_path):
    def sample(seed):
        result = run_script("generate.py", "--checkpoint", bigram_checkpoint, "--seed", seed,
                            "--max-new-tokens", "200", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first, second, other = sample(1), sample(1), sample(2)
    assert first == second and first != other
    assert first.startswith("\n") and len(first) == 1 + 200 + 1  # prompt, 200 characters, final newline


def test_prompt_is_continued(bigram_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", bigram_checkpoint, "--prompt", "KING:",
                        "--max-new-tokens", "20", "--num-samples", "2", "--top-k", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("KING:") >= 2 and "--- sample 2 of 2 ---" in result.stdout


def test_sampling_loop_matches_the_models_own_generate(bigram_checkpoint):
    _, model = train.load_checkpoint(str(bigram_checkpoint), torch.device("cpu"))
    idx = torch.zeros((3, 1), dtype=torch.long)
    torch.manual_seed(42)
    expected = model.generate(idx, max_new_tokens=50)                    # (3, 51)
    torch.manual_seed(42)
    streamed = torch.stack(list(generate.sample(model, idx, 50)), dim=1)  # (3, 50)
    assert torch.equal(streamed, expected[:, 1:])


def test_top_k_of_one_is_the_most_likely_character(bigram_checkpoint):
    _, model = train.load_checkpoint(str(bigram_checkpoint), torch.device("cpu"))
    idx = torch.arange(5)[:, None]                                          # (5, 1)
    first = next(generate.sample(model, idx, 1, top_k=1))                   # (5,)
    assert torch.equal(first, model(idx)[0][:, -1, :].argmax(dim=-1))


def test_prompt_with_unknown_characters_names_them(bigram_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", bigram_checkpoint, "--prompt", "KING€:", cwd=tmp_path)
    assert_one_line_error(result, "'€'")


def test_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run_script("generate.py", cwd=tmp_path), "no checkpoint at", "python train.py")


def test_truncated_checkpoint_is_one_line(bigram_checkpoint, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(bigram_checkpoint.read_bytes()[:500])
    assert_one_line_error(run_script("generate.py", "--checkpoint", path, cwd=tmp_path), "not a readable checkpoint")


def test_random_bytes_are_one_line(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    assert_one_line_error(run_script("generate.py", "--checkpoint", path, cwd=tmp_path), "not a readable checkpoint")


def test_foreign_checkpoint_is_one_line(bigram_checkpoint, tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    assert_one_line_error(run_script("generate.py", "--checkpoint", path, cwd=tmp_path), "missing model")

    checkpoint = torch.load(bigram_checkpoint, weights_only=True)
    checkpoint["model_args"] = {"model": "bigram", "vocab_size": len(checkpoint["vocab"]) + 1}
    checkpoint["vocab"] += "~"
    torch.save(checkpoint, path)
    assert_one_line_error(run_script("generate.py", "--checkpoint", path, cwd=tmp_path), "does not match")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": RunsCode()}, path, pickle_module=pickle)
    result = run_script("generate.py", "--checkpoint", path, cwd=tmp_path)
    assert_one_line_error(result, "refusing to load")
    assert not (tmp_path / "pwned").exists()


def test_bad_sampling_values_are_one_line(bigram_checkpoint, tmp_path):
    for flag, value in [("--temperature", "-1"), ("--top-k", "0"), ("--max-new-tokens", "-5")]:
        result = run_script("generate.py", "--checkpoint", bigram_checkpoint, flag, value, cwd=tmp_path)
        assert_one_line_error(result, flag)
