"""Exercise 1's "before": the GPT as the lecture builds it, in its names, each head a module of its own.

gpt.py runs all heads as one batch; apart from that, the two are the same model: load_from_gpt copies a
gpt.GPT's weights in (so there is no init here) and the tests check both give the same logits and loss.
The lecture names its model GPTLanguageModel; here it is LectureGPT, beside gpt.py's GPT.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F


class Head(nn.Module):
    """One head of causal self-attention: (B, T, n_embd) -> (B, T, head_size)."""

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        # True on and below the diagonal: the positions t may read. A constant: neither learned nor saved
        # (the lecture's ones and zeros are saved with the weights; the mask is the same).
        tril = torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))
        self.register_buffer("tril", tril, persistent=False)       # (block_size, block_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)          # 3 x (B, T, hs)
        wei = q @ k.transpose(-2, -1) / k.shape[-1] ** 0.5           # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(~self.tril[:T, :T], float("-inf"))     # (B, T, T): the future scores -inf
        wei = self.dropout(F.softmax(wei, dim=-1))                   # (B, T, T), rows sum to 1, then dropout
        return wei @ v                                               # (B, T, T) @ (B, T, hs) -> (B, T, hs)


class MultiHeadAttention(nn.Module):
    """n_head Heads side by side, their outputs joined and projected back: (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        head_size = n_embd // n_head
        self.heads = nn.ModuleList(Head(n_embd, head_size, block_size, dropout) for _ in range(n_head))
        self.proj = nn.Linear(n_head * head_size, n_embd)            # with a bias, as gpt.py's proj
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([head(x) for head in self.heads], dim=-1)    # n_head x (B, T, hs) -> (B, T, C)
        return self.dropout(self.proj(out))                          # (B, T, C)


class FeedForward(nn.Module):
    """Each position on its own through a 4x wider layer and back: (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(),   # (B, T, C) -> (B, T, 4C)
                                 nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))   # -> (B, T, C)

    def forward(self, x):
        return self.net(x)                                           # (B, T, C)


class Block(nn.Module):
    """Attention, then the feed-forward, each reading a layer-normed x and adding to it: shape kept."""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))                                 # (B, T, C)
        return x + self.ffwd(self.ln2(x))                            # (B, T, C)


class LectureGPT(nn.Module):
    """Token and position embeddings, n_layer Blocks, a last LayerNorm, and logits over vocab_size."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        """idx, targets (B, T) ids -> logits (B, T, vocab_size), mean cross-entropy (None without targets)."""
        B, T = idx.shape
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))   # (T, C)
        x = self.token_embedding_table(idx) + pos_emb                # (B, T, C) + (T, C) -> (B, T, C)
        logits = self.lm_head(self.ln_f(self.blocks(x)))             # (B, T, vocab_size)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


@torch.no_grad()
def load_from_gpt(gpt, model):
    """Copy a gpt.GPT's weights into a LectureGPT of the same sizes. Every name matches except gpt.py's
    fused sa.query_key_value, whose rows are all the queries, then all the keys, then all the values."""
    state = gpt.state_dict()
    for i, block in enumerate(model.blocks):
        fused = state.pop(f"blocks.{i}.sa.query_key_value.weight")   # (3C, C)
        C, n_head = fused.shape[1], len(block.sa.heads)
        for name, w in zip(("query", "key", "value"), fused.split(C), strict=True):    # 3 x (C, C)
            for h, w_head in enumerate(w.split(C // n_head)):   # n_head x (hs, C): head h, the h-th run
                state[f"blocks.{i}.sa.heads.{h}.{name}.weight"] = w_head
    model.load_state_dict(state)
