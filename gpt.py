"""
Step 5 of the lesson: the GPT, a decoder-only Transformer, as in the lecture.

The bigram model predicts the next character from the current one alone. A GPT lets every
position look back at all the positions before it, and decide *how much* to take from each:
that is self-attention. Stack that with a small per-position network, wrap both in residual
connections and layer norms, and repeat: that is the whole model, read here from top to bottom.

    python gpt.py        # the lecture's model, printed with its size (train.py --preset lecture trains it)

Shapes in comments: B = batch, T = time (positions, at most block_size), C = channels (n_embd),
nh = n_head, hs = head_size = C / nh. Left out on purpose: training (train.py) and sampling controls
(generate.py); it imports nothing of the project. Beyond the lecture: exercise 4's changes from later
papers (train.py's CPU recipe turns on RoPE), a fast path that keeps the same rule (one fused attention
call); below the divider: ReLU squared, and the KV cache that sampling uses (its two hooks are marked).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

# The lecture's model: 10,788,929 parameters on tiny Shakespeare (train.py's CPU recipe picks smaller ones).
PRESETS = {
    "lecture": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
}


@dataclass
class GPTConfig:
    vocab_size: int               # distinct characters
    block_size: int               # the longest context the model sees
    n_layer: int                  # Transformer blocks
    n_head: int                   # attention heads per block
    n_embd: int                   # channels per position
    dropout: float                # probability of zeroing an activation while training
    fused_attention: bool = True  # True: one fused PyTorch call; False: the explicit math, step by step
    # Changes from later papers (the lecture's exercise 4), each off in the lecture's model:
    rope: bool = False            # rotary position embeddings instead of the learned position table
    tie_weights: bool = False     # the output head reuses the token embedding's matrix
    activation: str = "relu"      # the feed-forward's non-linearity: "relu", "gelu" or "relu2"
    qk_norm: bool = False         # queries and keys scaled to the same length before they meet


# Attention alone is blind to order. The lecture adds a learned vector per position to each token's embedding
# (GPT, below); RoPE, on in train.py's CPU recipe, turns each query and key by its position instead (EX4).
def rotate(x, pos):
    """RoPE (Su et al., 2021): x (B, nh, T, hs) at positions pos (T,) -> x turned. The hs channels form hs/2
    pairs (channel i with i + hs/2: the paper pairs neighbours, a relabelling the projections absorb), and
    pair i at position t turns, as a point in a plane, by the angle t * theta_i, theta_i = 10000^(-2i/hs):
    some pairs fast, some slowly. Turning keeps lengths and angles, so a query turned by t and a key turned
    by s score as if only the key turned, by (s - t) * theta_i: how far apart they stand counts, not where."""
    hs = x.size(-1)
    theta = 10000 ** (-torch.arange(0, hs, 2, device=x.device) / hs)   # (hs/2,)
    angle = pos[:, None] * theta                                         # (T, hs/2)
    x1, x2 = x.float().chunk(2, dim=-1)             # (B, nh, T, hs/2) each; pair i is x1[..., i], x2[..., i]
    cos, sin = angle.cos(), angle.sin()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)   # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention. The lecture gives each head its own key, query and value
    Linear(n_embd, head_size) and runs the heads one after another; here one Linear(n_embd, 3 * n_embd)
    computes them all and the heads become a batch dimension: the same numbers, in fewer, larger matrix
    multiplies (tests/test_lesson_gpt.py checks this against the lecture's heads, tests/lecture_gpt.py)."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.fused_attention = config.fused_attention
        self.rope, self.qk_norm = config.rope, config.qk_norm
        # Every head's query, key and value projections, in one matrix.
        self.query_key_value = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        # After the heads have gathered information, mix it back into the residual stream.
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        # Dropout (Srivastava et al., 2014): while training, zero a random share p of the activations and
        # scale the rest by 1 / (1 - p), so the network cannot lean on any one of them and each keeps its
        # expected value: evaluation, which keeps them all, needs no change. Here on the attention weights
        # and on what the heads add to the residual stream; the feed-forward's output gets one too.
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        # Lower-triangular ones: position t may look at positions 0..t, never at the future it is
        # trying to predict (tests/test_lesson_attention_trick.py's masked average). Not learned or saved.
        tril = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("tril", tril, persistent=False)          # (block_size, block_size)

    def forward(self, x, pos, cache=None):
        """x (B, T, C) at positions pos (T,) -> (B, T, C): each position, with what it gathered from the past.
        cache: None, except while sampling with a KVCache (below the divider)."""
        B, T, C = x.shape
        # Each position emits a query ("what am I looking for?"), a key ("what do I contain?")
        # and a value ("what I will tell you if you attend to me").
        q, k, v = self.query_key_value(x).split(C, dim=2)                # 3 x (B, T, C)
        # Split the channels into heads and move heads next to batch: each head attends on its own.
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)    # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)    # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)    # (B, nh, T, hs)
        if self.qk_norm:   # QK-norm (Henry et al., 2020, less their learned scale): every query and key to
            # unit root-mean-square, so the affinities below stay within +-sqrt(hs), however large the
            # weights grow: a cap that keeps big models stable, and may keep a head from sharpening.
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))
        if self.rope:      # the position enters here instead of at the embedding: rotate(), above
            q, k = rotate(q, pos), rotate(k, pos)                         # (B, nh, T, hs) each
        if cache is not None:   # the KVCache's hook: this layer's earlier keys and values go first
            k, v = cache.update(self, k, v)                               # 2 x (B, nh, Tk, hs)
        Tk = k.size(2)          # the positions attended to: T, or more with a cache

        if not self.fused_attention:
            # Affinities: how well each query matches each key. For queries and keys of unit variance,
            # dividing by sqrt(head_size) keeps theirs at ~1 whatever the head size, so the softmax stays
            # soft instead of saturating into a one-hot that would let each position hear only one other.
            # (B, nh, T, hs) @ (B, nh, hs, Tk) -> (B, nh, T, Tk)
            wei = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)
            # The future gets -inf, so weight 0 after the softmax. Our T queries are the last T of the Tk
            # positions, so they take those rows of the mask (Tk = T: the lecture's tril[:T, :T]).
            wei = wei.masked_fill(~self.tril[Tk - T:Tk, :Tk], float("-inf"))   # (B, nh, T, Tk)
            wei = F.softmax(wei, dim=-1)                                 # (B, nh, T, Tk), each row sums to 1
            wei = self.attn_dropout(wei)                                 # cut a random share of the links
            out = wei @ v                      # (B, nh, T, Tk) @ (B, nh, Tk, hs) -> (B, nh, T, hs)
        else:
            # The same lines in one PyTorch call: q @ k^T scaled by 1/sqrt(head_size), the causal mask inside
            # (is_causal; with a cache, tril's rows), the softmax, dropout on the weights while training, @ v.
            # It need not store the (T, Tk) weights (on a GPU: flash attention); on a CPU this call is slower
            # than the lines above (train.py's CPU recipe takes --attention explicit).
            mask = None if Tk == T else self.tril[Tk - T:Tk, :Tk]                       # (T, Tk)
            dropout_p = self.attn_dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=mask is None)                # (B, nh, T, hs)

        out = out.transpose(1, 2).contiguous().view(B, T, C)             # (B, T, C): heads side by side again
        return self.resid_dropout(self.proj(out))                        # (B, T, C)


class FeedForward(nn.Module):
    """A small two-layer network applied to each position on its own: attention gathers, this thinks."""

    def __init__(self, config):
        super().__init__()
        # Between the layers, the lecture's ReLU; or GELU, x * Phi(x) (Phi: the normal CDF), a smooth ReLU
        # (Hendrycks & Gimpel, 2016; GPT-2 uses its tanh form); or ReLU squared (So et al., 2021; below).
        activation = {"relu": nn.ReLU, "gelu": nn.GELU, "relu2": ReLUSquared}[config.activation]()
        # 4x wider inside, as in "Attention Is All You Need" (512 -> 2048 -> 512).
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),   # (B, T, C) -> (B, T, 4C)
            activation,
            nn.Linear(4 * config.n_embd, config.n_embd),   # (B, T, 4C) -> (B, T, C): back into the stream
            nn.Dropout(config.dropout),
        )

    def forward(self, x):
        return self.net(x)                                 # (B, T, C) -> (B, T, C)


class Block(nn.Module):
    """One Transformer block: communication (attention), then computation (feed-forward)."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.sa = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.ffwd = FeedForward(config)

    def forward(self, x, pos, cache=None):
        # Residual connections: each sub-layer only *adds* to x, so gradients flow straight from
        # the loss to the first layer along the "+" and deep stacks train from the start.
        # LayerNorm rescales each position's C channels to mean 0 and variance 1, then applies a
        # learned gain and bias (per position, unlike batch norm's per channel across the batch).
        # Pre-norm: each sub-layer reads a normalised copy of x; x itself is never normalised on its
        # way. The original Transformer normalised after each "+" (post-norm), which deep stacks
        # only train with a long, careful warmup (Xiong et al., 2020); GPT-2 and later use pre-norm.
        x = x + self.sa(self.ln1(x), pos, cache)          # (B, T, C)
        x = x + self.ffwd(self.ln2(x))                    # (B, T, C)
        return x


class GPT(nn.Module):
    """Token and position embeddings, n_layer blocks, a final layer norm, and a linear head."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        # Attention is blind to order: a learned vector per position says where it is (or rotate(), above).
        if not config.rope:
            self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        # A list, not the lecture's nn.Sequential: each block is also given the positions (and a cache).
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        if config.tie_weights:   # Press & Wolf (2017): the head scores each character with the vector that
            # embeds it, so one matrix learns from both ends of the model (and vocab_size * C weights go).
            self.lm_head.weight = self.token_embedding_table.weight             # (vocab_size, C), one tensor

        # Small random weights (std 0.02, as GPT-2 and the gpt.py in the lecture's repository, though not the
        # video): the first loss is about ln(vocab_size). As GPT-2, the two projections per block that add
        # into the residual stream start smaller still, by 1 / sqrt(2 * n_layer), so that what all the blocks
        # add up to at the start is about as large whatever the number of layers.
        residual_projections = [m for block in self.blocks for m in (block.sa.proj, block.ffwd.net[2])]
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * config.n_layer) if module in residual_projections else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None, cache=None):
        """idx, targets: (B, T) ids -> logits (B, T, vocab_size), loss (or None)."""
        B, T = idx.shape
        start = 0 if cache is None else cache.advance(T)   # idx[:, 0]'s position: 0, or after a KVCache's
        assert start + T <= self.block_size, f"{start + T} positions, but block_size is {self.block_size}"
        x = self.token_embedding_table(idx)                          # (B, T, C)
        pos = torch.arange(start, start + T, device=idx.device)      # (T,)
        if not self.config.rope:
            x = x + self.position_embedding_table(pos)               # (B, T, C) + (T, C) -> (B, T, C)
        for block in self.blocks:
            x = block(x, pos, cache)                                 # (B, T, C)
        x = self.ln_f(x)                                             # (B, T, C)
        logits = self.lm_head(x)                                     # (B, T, vocab_size)

        if targets is None:
            return logits, None
        # As in bigram.py: B*T independent predictions. float(): the loss in full precision even when the
        # matrix multiplies ran in bfloat16. A target of -1 is no prediction (train.py's addition exercise
        # marks the problem's own characters so): the mean is over the rest.
        loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.view(B * T), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, generator=None):
        """Extend idx (B, T) by max_new_tokens sampled characters -> (B, T + max_new_tokens). generator: a
        random stream of its own (train.py's samples), else torch's global one."""
        for _ in range(max_new_tokens):
            # The mask (and the position table) have block_size rows: the model sees the last block_size.
            idx_cond = idx[:, -self.block_size:]                 # (B, T), T <= block_size
            logits, _ = self(idx_cond)                           # (B, T, vocab_size)
            probs = F.softmax(logits[:, -1, :], dim=-1)          # (B, vocab_size)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)   # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)              # idx grows by one column
        return idx


# =================================================================================================
# The model the presets build is complete above. Below: ReLU squared (exercise 4; no preset turns it on),
# and the KV cache that generate.py samples with: the same logits, up to rounding, for less work.

class ReLUSquared(nn.Module):   # max(0, x)^2 ("Primer", So et al., 2021): 0 below 0, as ReLU; steeper above
    def forward(self, x):
        return F.relu(x).square()


class KVCache:
    """Every layer's keys and values so far, for sampling: they depend only on their position and earlier
    ones, so they stay true. Its hooks: GPT.forward calls advance, each CausalSelfAttention calls update."""

    def __init__(self, config):
        self.block_size = config.block_size
        self.store = {}    # per CausalSelfAttention: its keys and values, (B, nh, block_size, hs) each
        self.length = 0    # positions filled so far

    def advance(self, T):   # T new positions follow those held -> the first one's position
        self.length += T
        return self.length - T

    def update(self, attention, k, v):   # the new k, v (B, nh, T, hs) -> all so far (B, nh, Tk, hs) each
        B, nh, T, hs = k.shape
        if attention not in self.store:   # made on first use, as long as the window may grow
            shape = (B, nh, self.block_size, hs)
            self.store[attention] = k.new_empty(shape), v.new_empty(shape)   # (B, nh, block_size, hs) each
        keys, values = self.store[attention]
        keys[:, :, self.length - T:self.length] = k
        values[:, :, self.length - T:self.length] = v
        return keys[:, :, :self.length], values[:, :, :self.length]


if __name__ == "__main__":
    model = GPT(GPTConfig(vocab_size=65, **PRESETS["lecture"]))   # 65: tiny Shakespeare's characters
    logits, _ = model(torch.zeros((1, 8), dtype=torch.long))      # (B, T) = (1, 8) -> (1, 8, 65)
    print(f"{model}\n{sum(p.numel() for p in model.parameters()):,} parameters; logits {tuple(logits.shape)}")
