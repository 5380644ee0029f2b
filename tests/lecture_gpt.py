"""An independent reference GPT, with one module per attention head, as the lecture first builds it.

gpt.py computes all heads in one batched projection; this file keeps every head separate, so the
tests can copy gpt.py's weights in (load_from_gpt) and check both give the same logits and loss.
tests/benchmark.py also times it as the plain float32 baseline, so it uses only the ops the
lecture uses: matmul, masked_fill, softmax and nn.Dropout.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F


class AttentionHead(nn.Module):
    """A single causal self-attention head: (B, T, n_embd) -> (B, T, head_size)."""

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        # True above the diagonal: the later positions that position t must not read.
        future = torch.triu(torch.ones(block_size, block_size, dtype=torch.bool), diagonal=1)
        self.register_buffer("future", future, persistent=False)     # (block_size, block_size)
        self.scale = head_size ** -0.5
        self.weight_dropout = nn.Dropout(dropout)

    def forward(self, x):
        """x (B, T, n_embd) -> (B, T, head_size), each position a mix of the values at or before it."""
        T = x.shape[1]
        q, k, v = self.query(x), self.key(x), self.value(x)           # 3 x (B, T, hs)
        # Scaling keeps the scores' variance near 1, so the softmax does not collapse to one-hot.
        scores = q @ k.transpose(-2, -1) * self.scale                # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        scores = scores.masked_fill(self.future[:T, :T], float("-inf"))  # (B, T, T); exp(-inf) = 0
        weights = self.weight_dropout(F.softmax(scores, dim=-1))     # (B, T, T), rows sum to 1
        return weights @ v                                           # (B, T, T) @ (B, T, hs) -> (B, T, hs)


class DecoderLayer(nn.Module):
    """Pre-norm layer: x + attention(norm(x)), then x + feed-forward(norm(x)); shape kept."""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        head_size = n_embd // n_head
        self.attn_norm = nn.LayerNorm(n_embd)
        self.attention_heads = nn.ModuleList(
            AttentionHead(n_embd, head_size, block_size, dropout) for _ in range(n_head))
        self.attn_out = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(n_embd)
        self.mlp_in = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_out = nn.Linear(4 * n_embd, n_embd)
        self.mlp_dropout = nn.Dropout(dropout)

    def forward(self, x):
        """x (B, T, n_embd) -> (B, T, n_embd)."""
        h = self.attn_norm(x)                                        # (B, T, C)
        h = torch.cat([head(h) for head in self.attention_heads], dim=-1)  # n_head x (B, T, hs) -> (B, T, C)
        x = x + self.attn_dropout(self.attn_out(h))                  # (B, T, C)
        h = F.relu(self.mlp_in(self.mlp_norm(x)))                    # (B, T, 4C)
        return x + self.mlp_dropout(self.mlp_out(h))                 # (B, T, C)


class ReferenceGPT(nn.Module):
    """Embeddings, n_layer DecoderLayers, a final LayerNorm and a linear map to vocab_size logits."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, n_embd)
        self.positions = nn.Embedding(block_size, n_embd)
        self.layers = nn.ModuleList(DecoderLayer(n_embd, n_head, block_size, dropout) for _ in range(n_layer))
        self.final_norm = nn.LayerNorm(n_embd)
        self.to_logits = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        """idx, targets (B, T) ids -> logits (B, T, vocab_size), mean cross-entropy (or None)."""
        B, T = idx.shape
        x = self.tokens(idx) + self.positions(torch.arange(T, device=idx.device))  # (B, T, C) + (T, C)
        for layer in self.layers:
            x = layer(x)                                             # (B, T, C)
        logits = self.to_logits(self.final_norm(x))                  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))


@torch.no_grad()
def load_from_gpt(gpt, reference):
    """Copy a gpt.GPT's weights into a ReferenceGPT of the same sizes, splitting the fused q/k/v per head."""
    pairs = [(reference.tokens, gpt.token_embedding_table), (reference.positions, gpt.position_embedding_table),
             (reference.final_norm, gpt.ln_f), (reference.to_logits, gpt.lm_head)]
    for layer, block in zip(reference.layers, gpt.blocks, strict=True):
        pairs += [(layer.attn_norm, block.ln1), (layer.attn_out, block.sa.proj), (layer.mlp_norm, block.ln2),
                  (layer.mlp_in, block.ffwd.net[0]), (layer.mlp_out, block.ffwd.net[2])]
        # The fused weight's output rows are all queries, then all keys, then all values;
        # within each third, head h owns the h-th run of head_size rows.
        C = block.sa.query_key_value.in_features
        per_head = [w.split(C // len(layer.attention_heads)) for w in block.sa.query_key_value.weight.split(C)]
        for head, w_q, w_k, w_v in zip(layer.attention_heads, *per_head, strict=True):
            head.query.weight.copy_(w_q)                             # (hs, C)
            head.key.weight.copy_(w_k)                               # (hs, C)
            head.value.weight.copy_(w_v)                             # (hs, C)
    for ours, theirs in pairs:
        for name, p in ours.named_parameters():
            p.copy_(getattr(theirs, name))
