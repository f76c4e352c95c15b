"""The optimizer side of a step: AdamW and its parameter groups, the learning-rate schedule, embedding
gradients by row, and gradient clipping."""
from __future__ import annotations

import math

import torch
from torch import nn

from . import step_levers


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and LayerNorm weights are not decayed."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel updates all 22M+ parameters in one pass; it matters when steps are small
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the peak, reached at step warmup_steps (0-based; the first step already takes
    peak / (warmup_steps + 1)), then linear decay as in transformers, to 0 after the last step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule_factor("linear", step, warmup_steps,
                                                                                     total_steps))


def schedule_factor(kind: str, step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at `step` as a fraction of the peak: linear warmup (as in linear_schedule), then
    linear or (as transformers' cosine schedule, half a cycle) cosine decay to 0 after the last step."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class EmbeddingRowGrads:
    """Embedding gradients through the rows a step touched, and (`lazy`) AdamW on those rows alone.

    A batch reads a few hundred of the 30k word-embedding rows, yet the dense gradient of a lookup
    is a fresh zero-filled matrix the size of the table (47 MB for a 384-wide model) every step,
    which clipping then reads and scales. The lookups run sparse instead; `coalesce` sums each row's
    contributions and clipping works on those rows alone. Then, before the optimizer steps:

    - lazy (the default): AdamW updates the touched rows from their own moments, with the table's
      step count for bias correction, and leaves the other rows as they are, as TensorFlow's
      LazyAdam and PyTorch's SparseAdam do. Exact AdamW would also move every untouched row a little
      (the decay of its moments, weight decay), which is half of the optimizer's memory traffic on a
      22.7M-parameter model; a row used in every step gets exactly AdamW's update.
    - dense: the rows are written into a persistent buffer whose previous rows are zeroed first,
      and the optimizer sees the same dense gradient as it would without any of this.

    The loop uses this in one CPU process. Under DistributedDataParallel the embeddings stay dense
    (its all-reduce wants dense gradients) and so do their updates; on GPUs, where a dense table
    costs little, so do they; with fp16 loss scaling the rows are dense-updated (a step the scaler
    skips could not undo a row update).
    """

    def __init__(self, model: nn.Module, lazy: bool):
        # a table tied to an output projection (the masked-LM head's) gets a dense gradient on every row anyway
        shared = {id(p) for m in model.modules() if not isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
        self.modules = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.weight.requires_grad
                        and id(m.weight) not in shared]
        self.weights = [m.weight for m in self.modules]
        self.was_sparse = [m.sparse for m in self.modules]
        self.lazy = lazy
        for module in self.modules:
            module.sparse = True
        self.buffers: dict[int, torch.Tensor] = {}  # dense mode, made at the first step on the training device
        self.rows: dict[int, torch.Tensor] = {}

    def restore(self) -> None:
        """The lookups as the model came: whoever trains it next may not expect sparse gradients."""
        for module, was_sparse in zip(self.modules, self.was_sparse):
            module.sparse = was_sparse

    def coalesce(self) -> None:
        """One entry per touched row: micro-batches and repeated tokens summed."""
        for weight in self.weights:
            if weight.grad is not None and weight.grad.is_sparse:
                weight.grad = weight.grad.coalesce()

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Lazy: update the touched rows and clear the gradient, so the optimizer passes the table by.
        Dense: hand the optimizer the dense gradient."""
        for weight in self.weights:
            if weight.grad is None or not weight.grad.is_sparse:
                continue
            grad = weight.grad.coalesce()
            if self.lazy:
                self._adamw_rows(optimizer, weight, grad.indices()[0], grad.values())
                weight.grad = None
            else:
                weight.grad = self._dense(weight, grad)

    def _dense(self, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        buffer = self.buffers.get(id(weight))
        if buffer is None:
            buffer = self.buffers[id(weight)] = torch.zeros_like(weight)
        elif id(weight) in self.rows:
            buffer.index_fill_(0, self.rows[id(weight)], 0.0)
        rows = grad.indices()[0]
        buffer.index_copy_(0, rows, grad.values())
        self.rows[id(weight)] = rows
        return buffer

    @staticmethod
    @torch.no_grad()
    def _adamw_rows(optimizer: torch.optim.Optimizer, weight: torch.Tensor, rows: torch.Tensor,
                    grad: torch.Tensor) -> None:
        """torch.optim.AdamW's update (decoupled weight decay, bias correction) on `rows` of `weight`.

        The moments live in the optimizer's own state for the table, under AdamW's names, so they
        are checkpointed and resumed with the rest of the optimizer.
        """
        group = next(g for g in optimizer.param_groups if any(p is weight for p in g["params"]))
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state = optimizer.state[weight]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=weight.device)
            state["exp_avg"] = torch.zeros_like(weight)
            state["exp_avg_sq"] = torch.zeros_like(weight)
        state["step"] += 1
        step = float(state["step"])
        exp_avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        param = weight.index_select(0, rows).mul_(1 - lr * weight_decay)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        weight.index_copy_(0, rows, param)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """The total gradient norm; the gradients are scaled down to max_norm only when they exceed it
    (max_norm 0: never).

    A coalesced sparse gradient counts through its stored rows, which hold all its nonzeros.
    """
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads) if step_levers.ON["foreach_norm"] else [torch.linalg.vector_norm(g)
                                                                                for g in grads]
    norm = torch.linalg.vector_norm(torch.stack(norms))
    if max_norm > 0 and norm > max_norm:  # one host sync per step, which the loop pays for the log anyway
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return norm
