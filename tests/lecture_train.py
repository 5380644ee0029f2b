"""The lecture's training loop, with train.py's get_batch and estimate_loss and two of its settings
(below). It is to train.py what lecture_gpt.py is to gpt.py: the "before".

Read this first. train.py's train() runs the same loop and adds to it (in its lines and the helpers they
call): a learning-rate schedule, Muon beside AdamW, mixed precision with its loss scaler, gradient clipping,
torchrun's ranks, and the run's clock, files and Ctrl-C. With all of those turned off (AdamW at a constant
rate, float32, no clipping, no weight decay), train() ends with exactly this loop's weights (a test in
tests/test_lesson_train.py). It prints more (seconds, checkpoints, a sample line), and its last evaluation
comes after the last step, this loop's before it. get_batch and estimate_loss are train.py's: the
lecture's, with the data and sizes passed in, and the evaluation's batches drawn once so that every
evaluation scores the same text.
"""

import torch

from train import estimate_loss, get_batch


def lecture_train(model, train_data, eval_batches, max_iters, eval_interval, learning_rate, batch_size,
                  block_size):
    """Train model on train_data (ids) for max_iters steps -> the model. eval_batches: the fixed (x, y)
    batches of each split that estimate_loss scores, {"train": [...], "val": [...]}."""
    # The lecture's AdamW(model.parameters(), lr=learning_rate) keeps PyTorch's weight decay 0.01 and beta2
    # 0.999; here no decay and beta2 0.99, train.py's, so that the two loops can be compared.
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    for iter in range(max_iters):
        # Now and then, and once more before the last step: the loss on the text it learns from and on val.
        if iter % eval_interval == 0 or iter == max_iters - 1:
            losses = estimate_loss(model, eval_batches)
            print(f"step {iter}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        xb, yb = get_batch(train_data, batch_size, block_size, "cpu")   # (B, T) inputs, (B, T) targets, CPU
        logits, loss = model(xb, yb)                  # the forward pass: (B, T, vocab_size), the mean loss
        optimizer.zero_grad(set_to_none=True)         # forget the last step's gradients
        loss.backward()                               # the gradient of the loss for every parameter
        optimizer.step()                              # one AdamW step down it, scaled per parameter
    return model
