"""
Step 4 of the lesson: the lecture's "mathematical trick in self-attention", as an executable notebook.

We want each position t to gather information from positions 0..t, never from the future. The
simplest way to gather is to average. Each version below computes the same thing as the one
before it, and the tests prove it, until version 4 turns the fixed average into self-attention.
"""

import math

import torch
from torch.nn import functional as F

torch.manual_seed(1337)
B, T, C = 4, 8, 2                                   # batch, time, channels
x = torch.randn(B, T, C)                            # (B, T, C)


def version_1_for_loops(x):
    """xbow[b, t] = mean of x[b, 0..t]: a bag of words over the past, with two for-loops."""
    B, T, C = x.shape
    xbow = torch.zeros(B, T, C)                     # (B, T, C)
    for b in range(B):
        for t in range(T):
            xprev = x[b, :t + 1]                    # (t + 1, C)
            xbow[b, t] = torch.mean(xprev, 0)       # (C,)
    return xbow


def version_2_matrix_multiply(x):
    """The same average as one matrix multiply: row t of `wei` holds 1/(t+1) in its first t+1 columns."""
    T = x.shape[1]
    wei = torch.tril(torch.ones(T, T))              # (T, T) lower-triangular ones
    wei = wei / wei.sum(1, keepdim=True)            # (T, T) each row sums to 1
    return wei @ x                                  # (T, T) @ (B, T, C) -> (B, T, C), wei broadcast over B


def version_3_softmax(x):
    """The same weights from a softmax: -inf where t may not look, 0 elsewhere; exp(-inf) = 0."""
    T = x.shape[1]
    tril = torch.tril(torch.ones(T, T))             # (T, T)
    wei = torch.zeros(T, T)                         # (T, T) all affinities equal for now...
    wei = wei.masked_fill(tril == 0, float("-inf"))  # (T, T) ...except the future, which is forbidden
    wei = F.softmax(wei, dim=-1)                    # (T, T) uniform over the allowed past
    return wei @ x                                  # (B, T, C)


def version_4_self_attention(x, head_size=16):
    """The affinities stop being zeros: they come from the data, query . key, scaled by 1/sqrt(head_size)."""
    B, T, C = x.shape
    key = torch.nn.Linear(C, head_size, bias=False)
    query = torch.nn.Linear(C, head_size, bias=False)
    value = torch.nn.Linear(C, head_size, bias=False)
    k, q = key(x), query(x)                                        # (B, T, hs) each
    wei = q @ k.transpose(-2, -1) / math.sqrt(head_size)           # (B, T, hs) @ (B, hs, T) -> (B, T, T)
    tril = torch.tril(torch.ones(T, T))
    wei = wei.masked_fill(tril == 0, float("-inf"))                # (B, T, T)
    wei = F.softmax(wei, dim=-1)                                   # (B, T, T)
    return wei @ value(x), wei                                     # (B, T, hs), (B, T, T)


def test_version_1_averages_the_past():
    xbow = version_1_for_loops(x)
    assert torch.equal(xbow[:, 0], x[:, 0])                        # the first position sees only itself
    assert torch.allclose(xbow[:, -1], x.mean(dim=1))              # the last sees everything


def test_version_2_matrix_multiply_equals_version_1():
    assert torch.allclose(version_2_matrix_multiply(x), version_1_for_loops(x), atol=1e-6)


def test_version_3_softmax_equals_version_2():
    assert torch.allclose(version_3_softmax(x), version_2_matrix_multiply(x), atol=1e-6)


def test_version_4_weights_depend_on_the_data_but_never_on_the_future():
    torch.manual_seed(0)
    out, wei = version_4_self_attention(x)
    assert out.shape == (B, T, 16) and wei.shape == (B, T, T)
    assert torch.allclose(wei.sum(-1), torch.ones(B, T))           # each row is still an average...
    assert torch.equal(wei.triu(1), torch.zeros(B, T, T))          # ...of the past only
    assert not torch.allclose(wei[0], wei[1])                      # but each sequence weighs its own way
    assert not torch.allclose(wei[0, -1], torch.full((T,), 1 / T))  # and not uniformly


def test_scaling_by_sqrt_head_size_keeps_the_softmax_from_saturating():
    # q and k with unit-variance entries: q . k sums head_size products, so its variance is head_size.
    torch.manual_seed(0)
    head_size = 64
    q, k = torch.randn(B, 256, head_size), torch.randn(B, 256, head_size)
    raw = q @ k.transpose(-2, -1)                                  # (B, 256, 256)
    scaled = raw / math.sqrt(head_size)
    assert 48 < raw.var().item() < 80                              # ~ head_size = 64
    assert 0.75 < scaled.var().item() < 1.25                       # ~ 1
    # Large affinities make softmax one-hot: each position would listen to a single other one.
    row = torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5])
    assert F.softmax(row, dim=-1).max() < 0.3                      # diffuse
    assert F.softmax(row * 8, dim=-1).max() > 0.7                  # sharpened towards the maximum
