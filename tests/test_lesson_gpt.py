"""gpt.py's lesson: the lecture's heads, the causal mask, dropout, the fused path, exercise 4, the cache."""

import math

import pytest
import torch

from conftest import small_gpt   # vocab 65, block 32, 2 layers, 4 heads, n_embd 64, no dropout, eval mode
from gpt import GPT, GPTConfig
from lecture_gpt import LectureGPT, load_from_gpt


def test_forward_shapes_and_loss_at_initialisation():
    model = small_gpt()
    idx = torch.randint(65, (4, 32))                                     # (B, T)
    logits, loss = model(idx, idx)
    assert logits.shape == (4, 32, 65) and loss.shape == ()
    # Small initial weights: every character about equally likely, so the loss is about ln(65).
    assert abs(loss.item() - math.log(65)) < 0.05


def test_lecture_model_has_the_lectures_parameter_count():
    from gpt import PRESETS
    model = GPT(GPTConfig(vocab_size=65, **PRESETS["lecture"]))
    assert sum(p.numel() for p in model.parameters()) == 10_788_929  # the lecture prints 10.788929 M


def test_batched_heads_compute_what_the_lectures_separate_heads_compute():
    for fused_attention in (True, False):
        ours = small_gpt(fused_attention=fused_attention)
        reference = LectureGPT(65, 32, n_layer=2, n_head=4, n_embd=64, dropout=0.0).eval()
        load_from_gpt(ours, reference)
        for T in (7, 32):
            idx = torch.randint(65, (2, T))
            ours_logits, ours_loss = ours(idx, idx)
            reference_logits, reference_loss = reference(idx, idx)
            assert torch.allclose(ours_logits, reference_logits, atol=1e-5, rtol=0)
            assert abs(ours_loss.item() - reference_loss.item()) < 1e-5


def test_changing_a_future_character_never_changes_earlier_logits():
    for fused_attention in (True, False):
        model = small_gpt(fused_attention=fused_attention)
        idx = torch.randint(65, (1, 32))
        changed = idx.clone()
        changed[0, 20] = (idx[0, 20] + 1) % 65                           # a different character at t = 20
        before, after = model(idx)[0], model(changed)[0]
        assert torch.equal(before[:, :20], after[:, :20])                # positions 0..19 cannot see t = 20
        assert not torch.allclose(before[:, 20:], after[:, 20:])         # positions 20.. do see it


def test_fused_and_explicit_attention_give_the_same_logits():
    fused = small_gpt(fused_attention=True)
    explicit = small_gpt(fused_attention=False)
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(65, (3, 32))
    for T in (1, 7, 32):  # short contexts too: the mask must be cropped, not assumed full
        assert torch.allclose(fused(idx[:, :T])[0], explicit(idx[:, :T])[0], atol=1e-5, rtol=0)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = small_gpt(dropout=0.5)
    idx = torch.randint(65, (2, 16))
    assert torch.equal(model(idx)[0], model(idx)[0])                     # eval: deterministic
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])                 # train: a new mask each call


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_zeros_a_share_p_and_scales_the_rest_by_1_over_1_minus_p(p):
    torch.manual_seed(0)
    x = torch.randn(1000, 1000) + 10                                      # a million activations, none 0
    dropout = small_gpt(dropout=p).blocks[0].ffwd.net[3]                   # the model's own
    out = dropout.train()(x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p))                   # the kept ones, times 1 / (1 - p)
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.002)  # 4 standard deviations
    assert not torch.equal(kept, dropout(x) != 0)                         # a new mask each call
    assert torch.equal(dropout.eval()(x), x)                              # evaluation: x as it is


def test_both_attention_paths_drop_attention_weights_in_training_and_none_in_eval():
    """One function on every path and device: with the other dropouts removed, only the dropout on
    the attention weights is left to make two training passes differ."""
    for fused_attention in (True, False):
        model = small_gpt(fused_attention=fused_attention, dropout=0.5)
        for block in model.blocks:
            block.sa.resid_dropout, block.ffwd.net[3] = torch.nn.Identity(), torch.nn.Identity()
        idx = torch.randint(65, (2, 16))
        assert torch.equal(model(idx)[0], model(idx)[0])                  # eval: no dropout at all
        model.train()
        assert not torch.equal(model(idx)[0], model(idx)[0])              # train: the weights' dropout


def test_generate_crops_the_context_to_block_size():
    model = small_gpt(block_size=8)
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), max_new_tokens=30)
    assert out.shape == (2, 31)  # 31 > block_size: without cropping the position table would overflow


# Each of exercise 4's changes alone, then all of them together.
CHANGES = [{}, dict(rope=True), dict(tie_weights=True), dict(activation="gelu"), dict(activation="relu2"),
           dict(qk_norm=True), dict(rope=True, tie_weights=True, activation="relu2", qk_norm=True)]


@pytest.mark.parametrize("changes", CHANGES[1:], ids=lambda c: "+".join(f"{k}={v}" for k, v in c.items()))
def test_each_change_keeps_the_future_hidden_and_both_attention_paths_equal(changes):
    fused = small_gpt(fused_attention=True, **changes)
    explicit = small_gpt(fused_attention=False, **changes)
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(65, (2, 32))
    changed = idx.clone()
    changed[:, 20] = (idx[:, 20] + 1) % 65
    logits = fused(idx)[0]
    assert torch.allclose(logits, explicit(idx)[0], atol=1e-5, rtol=0)
    assert torch.equal(logits[:, :20], fused(changed)[0][:, :20])
    loss = fused(idx, torch.randint(65, (2, 32)))[1].item()
    assert loss == pytest.approx(math.log(65), abs=0.1)                  # still about a fair first guess


def test_rope_turns_pairs_of_channels_so_that_only_the_distance_between_two_positions_counts():
    from gpt import rotate
    q, k = torch.randn(2, 1, 1, 1, 16).unbind(0)                          # one query and one key, hs = 16
    def score(t, s):   # the query at position t meets the key at position s
        return (rotate(q, torch.tensor([t])) * rotate(k, torch.tensor([s]))).sum().item()
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5) == pytest.approx(score(102, 100), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)   # another distance, another score
    turned = rotate(q, torch.tensor([5]))
    assert (torch.linalg.vector_norm(turned)
            == pytest.approx(torch.linalg.vector_norm(q).item()))             # only turned
    assert torch.equal(rotate(q, torch.tensor([0])), q)                       # position 0: not turned at all
    # Pair i is channels i and i + 8, turned by 5 * 10000 ** (-i / 8): channel 0 with channel 8 by 5 radians.
    x, y = q[..., 0].item(), q[..., 8].item()
    assert turned[..., 0].item() == pytest.approx(x * math.cos(5) - y * math.sin(5), abs=1e-5)
    assert turned[..., 8].item() == pytest.approx(x * math.sin(5) + y * math.cos(5), abs=1e-5)


def test_rope_drops_the_position_table_and_a_tied_head_shares_the_embedding():
    plain, rope, tied = small_gpt(), small_gpt(rope=True), small_gpt(tie_weights=True)
    count = lambda model: sum(p.numel() for p in model.parameters())     # noqa: E731
    assert count(plain) - count(rope) == 32 * 64                              # block_size x n_embd
    assert count(plain) - count(tied) == 65 * 64                              # vocab_size x n_embd
    assert tied.lm_head.weight is tied.token_embedding_table.weight
    loaded = small_gpt(tie_weights=True)
    loaded.load_state_dict(tied.state_dict())                                 # still one tensor after loading
    assert loaded.lm_head.weight is loaded.token_embedding_table.weight


def test_the_feed_forward_takes_the_chosen_non_linearity():
    x = torch.linspace(-3, 3, 13)
    for name, expected in (("relu", torch.relu(x)), ("gelu", torch.nn.functional.gelu(x)),
                           ("relu2", torch.relu(x) ** 2)):
        assert torch.allclose(small_gpt(activation=name).blocks[0].ffwd.net[1](x), expected)


@pytest.mark.parametrize("changes", CHANGES,
                         ids=lambda c: "+".join(f"{k}={v}" for k, v in c.items()) or "lecture")
def test_a_cache_fed_several_positions_at_a_time_gives_the_full_contexts_logits(changes):
    """Prompt of 5, then 4 new positions at once, then 1, then 6: every call after the first has a
    filled cache and (but for the single one) several queries, so each needs its rows of the mask."""
    from gpt import KVCache
    for fused_attention in (True, False):
        model = small_gpt(fused_attention=fused_attention, block_size=16, **changes)
        idx = torch.randint(65, (2, 16))                                      # (B, block_size)
        full, _ = model(idx)                                                  # (B, 16, vocab_size)
        cache = KVCache(model.config)
        pieces = [model(idx[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 9), (9, 10), (10, 16))]
        assert cache.length == 16
        assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
