"""Batched inference: a model over encoded features, in length-sorted batches, on one process or many."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .batching import Features, collate, eval_batches
from .devices import autocast, resolve_precision, world


# On CPU, inference runs fastest in batches that stay in cache, so a batch holds at most this many
# tokens whatever its number of sequences (bench/levers.py measures it against fixed batch sizes).
# GPUs take --eval-batch-size sequences per batch as they are.
CPU_INFERENCE_TOKENS = 2048


@torch.inference_mode()
def predict(model: nn.Module, features: Features, pad_id: int, device: torch.device,
            batch_size: int = 128, precision: str = "auto", per_token: bool = False) -> list:
    """Run the model over all features; each model output comes back in feature order as float32.

    `per_token=False`: one array [n, ...] per output (classification logits).
    `per_token=True`: per output, a list of 1-D arrays trimmed to each sequence's length (span logits).
    Batches are sorted by length so little is spent on pads. Under torchrun each rank predicts
    every world_size-th batch into zeros, and one all-reduce sums the shares: each example is
    counted exactly once, and its numbers are exactly what its rank computed. The process is left as it
    was: tuning the allocator is for the CLI and the training loop, which own theirs.
    """
    rank, world_size = world()
    dtype = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    lengths, offsets = features.lengths, features.offsets
    batches = eval_batches(lengths, batch_size, CPU_INFERENCE_TOKENS if device.type == "cpu" else None)
    mine = batches[rank::world_size]
    results = None  # per output: rows in feature order, or (per_token) tokens end to end as in features.ids
    # a rank without a batch of its own still runs one, to learn the outputs' shapes
    for indices in mine or batches[:1]:
        batch = collate(features, indices, pad_id)
        batch = {k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")}
        with autocast(device, dtype):
            outputs = model(**batch)
        outputs = [o.float().cpu().numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
        if results is None:
            rows = offsets[-1] if per_token else len(features)
            results = [np.zeros((rows, *o.shape[2 if per_token else 1 :]), np.float32) for o in outputs]
        if not mine:
            break
        for result, output in zip(results, outputs):
            for row, i in enumerate(indices):
                if per_token:
                    result[offsets[i] : offsets[i + 1]] = output[row, : lengths[i]]
                else:
                    result[i] = output[row]
    model.train(was_training)
    if results is None:  # no features
        return []
    if world_size > 1:
        for result in results:
            shares = torch.from_numpy(result).to(device)
            dist.all_reduce(shares)
            result[...] = shares.cpu().numpy()
    if per_token:
        return [[result[offsets[i] : offsets[i + 1]] for i in range(len(features))] for result in results]
    return results
