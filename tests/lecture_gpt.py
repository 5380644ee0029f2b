"""The lecture's GPT as written in the video, one module per head, for comparison with gpt.py.

Tests copy gpt.py's weights into it and check that both compute the same logits; the benchmark
times it as the plain float32 baseline. Only the globals are turned into arguments.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F


class Head(nn.Module):
    """One head of self-attention."""

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)                                                # (B, T, hs)
        q = self.query(x)                                              # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5            # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))   # (B, T, T)
        wei = F.softmax(wei, dim=-1)                                   # (B, T, T)
        wei = self.dropout(wei)
        v = self.value(x)                                              # (B, T, hs)
        return wei @ v                                                 # (B, T, T) @ (B, T, hs) -> (B, T, hs)


class MultiHeadAttention(nn.Module):
    """Multiple heads of self-attention in parallel."""

    def __init__(self, n_embd, num_heads, head_size, block_size, dropout):
        super().__init__()
        self.heads = nn.ModuleList([Head(n_embd, head_size, block_size, dropout) for _ in range(num_heads)])
        self.proj = nn.Linear(head_size * num_heads, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)            # (B, T, C)
        return self.dropout(self.proj(out))


class FeedFoward(nn.Module):  # sic: the lecture's spelling
    """A simple linear layer followed by a non-linearity."""

    def __init__(self, n_embd, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(),
                                 nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """Transformer block: communication followed by computation."""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        head_size = n_embd // n_head
        self.sa = MultiHeadAttention(n_embd, n_head, head_size, block_size, dropout)
        self.ffwd = FeedFoward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        x = x + self.ffwd(self.ln2(x))
        return x


class GPTLanguageModel(nn.Module):

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)                                      # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))    # (T, C)
        x = self.blocks(tok_emb + pos_emb)                                             # (B, T, C)
        logits = self.lm_head(self.ln_f(x))                                            # (B, T, vocab_size)
        if targets is None:
            return logits, None
        B, T, C = logits.shape
        return logits, F.cross_entropy(logits.view(B * T, C), targets.view(B * T))


def copy_weights_from(gpt, lecture):
    """Load a gpt.GPT's weights into a GPTLanguageModel of the same sizes, splitting the heads apart."""
    C, nh = gpt.config.n_embd, gpt.config.n_head
    hs = C // nh
    with torch.no_grad():
        for name in ("token_embedding_table", "position_embedding_table", "ln_f", "lm_head"):
            getattr(lecture, name).load_state_dict(getattr(gpt, name).state_dict())
        for ours, theirs in zip(gpt.blocks, lecture.blocks):
            for name in ("ln1", "ln2", "ffwd"):
                getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
            theirs.sa.proj.load_state_dict(ours.sa.proj.state_dict())
            W_q, W_k, W_v = ours.sa.query_key_value.weight.split(C, dim=0)   # 3 x (C, C), rows = outputs
            for h, head in enumerate(theirs.sa.heads):
                rows = slice(h * hs, (h + 1) * hs)                            # head h's output channels
                head.query.weight.copy_(W_q[rows])
                head.key.weight.copy_(W_k[rows])
                head.value.weight.copy_(W_v[rows])
