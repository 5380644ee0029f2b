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


# --- the GPT: KV cache, batches of samples, greedy, top-p, interactive, --out ---------------------

def collect(model, idx, n, **options):
    return torch.stack(list(generate.sample(model, idx, n, **options)), dim=1)   # (B, n)


def test_kv_cache_gives_the_same_logits_as_the_full_context(gpt_checkpoint):
    from gpt import KVCache
    _, model = train.load_checkpoint(str(gpt_checkpoint), torch.device("cpu"))
    idx = torch.randint(len(_["vocab"]), (2, 16))                                # (B, block_size)
    full, _ = model(idx)                                                         # (B, 16, vocab_size)
    cache = KVCache(model.config)
    first, _ = model(idx[:, :5], cache=cache)                                    # a prompt of 5
    steps = [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 16)]       # then one at a time
    cached = torch.cat([first] + steps, dim=1)                                   # (B, 16, vocab_size)
    assert cache.length == 16
    assert torch.allclose(cached, full, atol=1e-5, rtol=0)


def test_cached_and_uncached_sampling_write_the_same_characters(gpt_checkpoint):
    # block_size is 16: 60 new characters run well past the point where the window starts to slide.
    for fused_attention in (True, False):
        _, model = train.load_checkpoint(str(gpt_checkpoint), torch.device("cpu"), fused_attention)
        idx = torch.zeros((3, 4), dtype=torch.long)
        torch.manual_seed(7)
        cached = collect(model, idx, 60, kv_cache=True)
        torch.manual_seed(7)
        plain = collect(model, idx, 60, kv_cache=False)
        torch.manual_seed(7)
        lecture = model.generate(idx, 60)[:, 4:]                                  # the model's own loop
        assert torch.equal(cached, plain) and torch.equal(plain, lecture)


def test_cached_and_uncached_scripts_print_the_same_text(gpt_checkpoint, tmp_path):
    runs = [run_script("generate.py", "--checkpoint", gpt_checkpoint, "--seed", "3", "--max-new-tokens", "80",
                       *flags, cwd=tmp_path) for flags in ([], ["--no-kv-cache"])]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout


def test_temperature_zero_is_greedy_and_ignores_the_seed(gpt_checkpoint):
    _, model = train.load_checkpoint(str(gpt_checkpoint), torch.device("cpu"))
    idx = torch.zeros((1, 1), dtype=torch.long)
    torch.manual_seed(1)
    first = collect(model, idx, 30, temperature=0)
    torch.manual_seed(2)
    assert torch.equal(first, collect(model, idx, 30, temperature=0))
    context = idx
    for t in range(30):  # each character is the argmax given the ones before it
        assert first[0, t] == model(context)[0][0, -1].argmax()
        context = torch.cat([context, first[:, t:t + 1]], dim=1)[:, -16:]


def test_top_p_keeps_the_fewest_likeliest_characters_that_reach_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda p: (generate.next_token_probs(logits, top_p=p) > 0).int().tolist()[0]
    assert keep(0.4) == [1, 0, 0, 0]
    assert keep(0.5) == [1, 0, 0, 0]
    assert keep(0.7) == [1, 1, 0, 0]
    assert keep(0.96) == [1, 1, 1, 1]
    assert keep(1.0) == [1, 1, 1, 1]
    probs = generate.next_token_probs(logits, top_p=0.7)
    assert torch.allclose(probs.sum(), torch.tensor(0.8))  # kept as they were; multinomial renormalises


def test_num_samples_are_one_batch_printed_one_after_another(gpt_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--num-samples", "3", "--prompt", "KING:",
                        "--max-new-tokens", "40", "--seed", "1", "--out", tmp_path / "more.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    parts = result.stdout.split("--- sample ")
    assert [p[:6] for p in parts[1:]] == ["1 of 3", "2 of 3", "3 of 3"]
    assert all(p.split("---\n", 1)[1].startswith("KING:") for p in parts[1:])
    assert (tmp_path / "more.txt").read_text(encoding="utf-8") == result.stdout


def test_interactive_continues_each_line_and_survives_bad_input(gpt_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--interactive", "--max-new-tokens", "20",
                        cwd=tmp_path, stdin="KING:\nQUEEN€\nNURSE:\n\nnever read\n")
    assert result.returncode == 0, result.stderr
    assert "KING:" in result.stdout and "NURSE:" in result.stdout and "QUEEN" not in result.stdout
    assert "never saw: '€'" in result.stderr and "Traceback" not in result.stderr
    # Ctrl-D (end of input) ends it as well.
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--interactive", cwd=tmp_path, stdin="")
    assert result.returncode == 0, result.stderr


def test_numbers_that_are_not_finite_are_one_line(gpt_checkpoint, tmp_path):
    # float("nan") parses, and a NaN temperature used to reach torch.multinomial as a traceback.
    for flag, value in [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan")]:
        result = run_script("generate.py", "--checkpoint", gpt_checkpoint, flag, value, cwd=tmp_path)
        assert_one_line_error(result, flag)


def test_bad_sampling_controls_are_one_line(gpt_checkpoint, tmp_path):
    for flag, value in [("--temperature", "-0.5"), ("--top-p", "0"), ("--top-p", "1.5"), ("--top-k", "0"),
                        ("--num-samples", "0")]:
        result = run_script("generate.py", "--checkpoint", gpt_checkpoint, flag, value, cwd=tmp_path)
        assert_one_line_error(result, flag)


def test_unwritable_out_file_is_one_line(gpt_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--out", tmp_path / "no" / "such" / "f.txt",
                        cwd=tmp_path)
    assert_one_line_error(result, "--out")
