"""
Step 2 of the lesson: the simplest language model there is, the bigram model.

It predicts the next character from the current character alone: for each of the vocab_size
characters it keeps one row of vocab_size numbers (logits), which after a softmax are the
probabilities of every possible next character. Training fills that table in. It never looks
further back than one character, so its text has the right letters and spaces but few words;
the GPT in gpt.py looks further back (attention), and thinks more about what it sees there.

    python train.py --model bigram --out-dir out-bigram     # train it (seconds on a CPU)
    python generate.py --checkpoint out-bigram/ckpt.pt      # sample from it
"""

import torch
import torch.nn as nn
from torch.nn import functional as F


class BigramLanguageModel(nn.Module):
    """A lookup table: the embedding of a character *is* the logits of the character after it."""

    def __init__(self, vocab_size):
        super().__init__()
        # Row i holds the logits of the next character when the current one is character i.
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)
        # Start every logit near zero, so that at first all next characters look equally likely
        # (nn.Embedding's default N(0, 1), the lecture's, starts with confident, random, wrong guesses:
        # its first loss was about 4.9 where 4.17, below, is a fair start).
        nn.init.normal_(self.token_embedding_table.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        """idx, targets: (B, T) ids -> logits (B, T, vocab_size), loss (scalar, or None)."""
        # B = batch (independent sequences), T = time (positions), C = channels (here vocab_size).
        logits = self.token_embedding_table(idx)  # (B, T, C)

        if targets is None:
            return logits, None
        # cross_entropy wants the classes in dimension 1, so we flatten batch and time into one
        # long list of B*T independent predictions, each a row of C logits with one target id.
        B, T, C = logits.shape
        loss = F.cross_entropy(logits.view(B * T, C), targets.view(B * T))
        # At initialisation the logits are nearly equal, so each of the vocab_size characters gets
        # probability ~1/vocab_size and the loss starts near -ln(1/65) = ln(65) ~ 4.17 on tiny
        # Shakespeare. A first loss far above that means the model starts out confidently wrong.
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, generator=None):
        """Extend idx (B, T) by max_new_tokens sampled characters -> (B, T + max_new_tokens), drawn from
        generator, a random stream of their own, if one is given."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx)                                # (B, T, C)
            logits = logits[:, -1, :]                            # (B, C): only the last step predicts
            probs = F.softmax(logits, dim=-1)                    # (B, C)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)   # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)              # (B, T + 1)
        return idx
