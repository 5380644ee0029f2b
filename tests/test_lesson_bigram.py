"""bigram.py's lesson: a table of next-character logits, its loss at initialisation, and sampling."""

import math

import torch

from bigram import BigramLanguageModel


def test_forward_gives_logits_for_every_position_and_a_scalar_loss():
    torch.manual_seed(0)
    model = BigramLanguageModel(vocab_size=65)
    idx = torch.randint(65, (4, 8))                      # (B, T)
    logits, loss = model(idx, idx)
    assert logits.shape == (4, 8, 65) and loss.shape == ()
    logits, loss = model(idx)
    assert logits.shape == (4, 8, 65) and loss is None


def test_loss_at_initialisation_is_about_ln_vocab_size():
    # Every next character is equally likely at first, so the loss is -ln(1/65) = ln(65) = 4.174.
    torch.manual_seed(0)
    model = BigramLanguageModel(vocab_size=65)
    idx, targets = torch.randint(65, (32, 8)), torch.randint(65, (32, 8))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(65)) < 0.01


def test_generate_appends_max_new_tokens_valid_ids():
    torch.manual_seed(0)
    model = BigramLanguageModel(vocab_size=10)
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), max_new_tokens=20)
    assert out.shape == (2, 21)
    assert out[:, 0].eq(0).all() and out.min() >= 0 and out.max() < 10
