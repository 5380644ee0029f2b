"""generate.py's lesson: the lecture's sampling loop, temperature, top-k, top-p, and the KV cache (the same
logits up to rounding)."""

import pytest
import torch

import generate
from conftest import run_script
from gpt import KVCache


def load(checkpoint):
    return generate.load_model(str(checkpoint), torch.device("cpu"))


def collect(model, idx, n, **options):
    return torch.stack(list(generate.sample(model, idx, n, **options)), dim=1)   # (B, n)


def test_the_sampling_loop_is_the_models_own_generate(bigram_checkpoint, gpt_checkpoint,
                                                      changed_gpt_checkpoint):
    # The GPT's block_size is 16: 60 new characters run well past the point where the window slides.
    for checkpoint in (bigram_checkpoint, gpt_checkpoint, changed_gpt_checkpoint):
        model, *_ = load(checkpoint)
        idx = torch.zeros((3, 4), dtype=torch.long)
        torch.manual_seed(7)
        lecture = model.generate(idx, 60)[:, 4:]
        for kv_cache in (True, False):
            torch.manual_seed(7)
            assert torch.equal(collect(model, idx, 60, kv_cache=kv_cache), lecture)


def test_the_same_seed_writes_the_same_text_and_another_seed_does_not(bigram_checkpoint, tmp_path):
    def sample(seed):
        result = run_script("generate.py", "--checkpoint", bigram_checkpoint, "--seed", seed,
                            "--max-new-tokens", "200", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout
    first, second, other = sample(1), sample(1), sample(2)
    assert first == second and first != other
    assert first.startswith("\n") and len(first) == 1 + 200 + 1   # prompt, 200 characters, final newline


def test_temperature_zero_and_top_k_of_one_are_greedy(gpt_checkpoint):
    model, *_ = load(gpt_checkpoint)
    idx = torch.zeros((1, 1), dtype=torch.long)
    torch.manual_seed(1)
    first = collect(model, idx, 30, temperature=0)
    torch.manual_seed(2)
    assert torch.equal(first, collect(model, idx, 30, temperature=0))
    assert torch.equal(first, collect(model, idx, 30, top_k=1))
    assert torch.equal(first, collect(model, idx, 30, temperature=1e-300))   # not NaN: greedy
    context = idx
    for t in range(30):   # each character is the argmax given the ones before it
        assert first[0, t] == model(context)[0][0, -1].argmax()
        context = torch.cat([context, first[:, t:t + 1]], dim=1)[:, -16:]


def test_top_p_keeps_the_fewest_likeliest_characters_that_reach_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda p: (generate.next_token_probs(logits, top_p=p) > 0).int().tolist()[0]
    assert keep(1e-300) == keep(0.4) == keep(0.5) == [1, 0, 0, 0]
    assert keep(0.7) == [1, 1, 0, 0]
    assert keep(0.96) == keep(1.0) == [1, 1, 1, 1]
    probs = generate.next_token_probs(logits, top_p=0.7)
    assert torch.allclose(probs.sum(), torch.tensor(0.8))   # kept as they were; multinomial renormalises


def test_samples_are_one_batch_printed_one_after_another_and_out_gets_the_same(gpt_checkpoint, tmp_path):
    result = run_script("generate.py", "--checkpoint", gpt_checkpoint, "--num-samples", "3",
                        "--prompt", "KING:", "--max-new-tokens", "40", "--seed", "1",
                        "--out", tmp_path / "more.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    parts = result.stdout.split("--- sample ")
    assert [p[:6] for p in parts[1:]] == ["1 of 3", "2 of 3", "3 of 3"]
    assert all(p.split("---\n", 1)[1].startswith("KING:") for p in parts[1:])
    assert (tmp_path / "more.txt").read_text(encoding="utf-8") == result.stdout


@pytest.mark.parametrize("checkpoint", ["gpt_checkpoint", "changed_gpt_checkpoint"])
def test_the_kv_cache_gives_the_full_contexts_logits(checkpoint, request):
    model, chars, _ = load(request.getfixturevalue(checkpoint))
    idx = torch.randint(len(chars), (2, 16))                                     # (B, block_size)
    full, _ = model(idx)                                                         # (B, 16, vocab_size)
    cache = KVCache(model.config)
    first, _ = model(idx[:, :5], cache=cache)                                    # a prompt of 5
    steps = [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 16)]       # then one at a time
    assert cache.length == 16
    assert torch.allclose(torch.cat([first] + steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("checkpoint", ["gpt_checkpoint", "changed_gpt_checkpoint"])
def test_with_the_kv_cache_each_step_runs_only_the_new_character_until_the_window_slides(checkpoint, request):
    model, chars, _ = load(request.getfixturevalue(checkpoint))
    forward = generate.with_kv_cache(model)
    idx = torch.randint(len(chars), (2, 24))
    for T in range(5, 25):   # as in sample(): a prompt of 5, one more each step, then the last 16 slide
        idx_cond = idx[:, :T][:, -16:]                                           # (B, min(T, 16))
        logits, _ = forward(idx_cond)
        assert logits.size(1) == (5 if T == 5 else 1 if T <= 16 else 16)         # the positions it ran
        assert torch.allclose(logits[:, -1], model(idx_cond)[0][:, -1], atol=1e-5, rtol=0)
