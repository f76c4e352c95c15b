"""Where a bertfit step's time goes: torch.profiler's CPU time of a training step and an inference batch, by category.

    python bench/profile_step.py --data-dir ../shared/data/glue
    python bench/profile_step.py --shapes squad --steps 5 --warmup 2 --figures-dir /tmp/trial

For each shape (--shapes), on the embedded model:
- training: one optimizer step of bertfit's loop, `training.Trainer.step` itself (the step's seed,
  forward and loss under autocast, backward, sparse embedding gradients coalesced, clipping, the
  row-wise AdamW update of the embeddings (lazy_embeddings) and fused AdamW for the rest, the
  schedule), with the job's default settings (SST-2: `settings.glue_settings`; SQuAD:
  `settings.SQUAD_DEFAULTS`) and --precision resolved as bertfit resolves it;
- inference: one call of `predicting.predict` over the job's eval batch size (128 sequences), which
  cuts them into batches of at most `predicting.CPU_INFERENCE_TOKENS` tokens on CPU, as evaluation does.
Shapes: sst2, batches of 32 SST-2 training sentences in bertfit's length-grouped order, and the
first 128 dev sentences (--data-dir; without it, generated sentences of 10-30 tokens, uniformly);
squad, batches of 16 generated 384-token windows, and 128 such windows for inference.

--warmup training steps first (and one predict call), then --steps training steps and
--inference-steps predict calls (each already runs many batches) timed without the profiler: the
step time, its model FLOPs and the MFU against a bf16 or fp32 matmul peak measured in the same run,
as bench/common.py measures it. Then the same steps again under torch.profiler (CPU activities).
Each op's self CPU time goes to one category (`category`): matrix products (SDPA's fused attention,
softmax included, for long sequences), attention softmax (the explicit attention of short ones),
layer norm, GELU and other elementwise, dropout masks, casts and copies, zero-filling, the optimizer
(AdamW, clipping, the embedding rows' update), embedding backward, other ops, and the step's time
outside any op (Python: the loop's own code, the modules' calls). Shares are of the profiled step's
wall time, which the profiler lengthens; the step time and the MFU come from the unprofiled steps.
The top ops name the event each ran in (an aten::copy_ in aten::addmm is its bias broadcast, not a
cast).

Levers (`bertfit.step_levers`, on by CPU kind): with --levers (default all), the training step is also
measured and profiled with every lever off (the plain path, what a user got without them) and with
each lever alone on, each on a fresh model over the same batches; the main figures are the default,
this kind's choice. With the dropout_add lever the residual's add runs inside the dropout's addcmul, so
the dropout category then holds it. First pass (--first-pass, before any other step of the shape in the
process): the loop's first batches timed on a first and then a second pass over the same batches;
the difference is warm-up, the first step's and each new padded width's. The figures go to docs/figures/<cpu kind>/profile-SHAPE.json (profile-SHAPE-PRECISION.json
for an explicit --precision).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SHAPES = ("sst2", "squad")

# ---- the categories -----------------------------------------------------------------------------

MATMUL, SOFTMAX, LAYER_NORM, ELEMENTWISE = "matrix products", "attention softmax", "layer norm", \
    "GELU and other elementwise"
DROPOUT, CASTS, ZEROS, OPTIMIZER = "dropout masks", "casts and copies", "zero-filling", "optimizer"
EMBEDDING_BACKWARD, OTHER, OUTSIDE = "embedding backward", "other ops", "outside any op (Python)"
CATEGORIES = (MATMUL, SOFTMAX, LAYER_NORM, ELEMENTWISE, DROPOUT, CASTS, ZEROS, OPTIMIZER, EMBEDDING_BACKWARD, OTHER,
              OUTSIDE)

# The labels this script puts around parts of a step (record_function), so their ops are told apart
# from the same ops elsewhere: a dropout's mask is made of random_, lt and where; the embedding rows'
# AdamW of index_select, mul_ and addcdiv_.
STEP_LABEL = "bertfit.profile.step"
DROPOUT_LABEL = "bertfit.profile.dropout"
COALESCE_LABEL = "bertfit.profile.embedding_rows.coalesce"
ROW_UPDATE_LABEL = "bertfit.profile.embedding_rows.update"

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul",
              "aten::_addmm_activation", "aten::addbmm", "aten::mv", "aten::dot"}
SOFTMAX_OPS = {"aten::softmax", "aten::_softmax", "aten::_softmax_backward_data", "aten::_safe_softmax"}
LAYER_NORM_OPS = {"aten::layer_norm", "aten::native_layer_norm", "aten::native_layer_norm_backward"}
ELEMENTWISE_OPS = {"aten::gelu", "aten::gelu_backward", "aten::add", "aten::add_", "aten::mul", "aten::mul_",
                   "aten::div", "aten::div_", "aten::sub", "aten::sub_", "aten::rsub", "aten::neg", "aten::where",
                   "aten::masked_fill", "aten::masked_fill_", "aten::tanh", "aten::tanh_backward", "aten::lt",
                   "aten::gt", "aten::le", "aten::ge", "aten::eq", "aten::ne", "aten::logical_not",
                   "aten::bitwise_not", "aten::sqrt", "aten::pow", "aten::exp", "aten::clamp", "aten::addcmul_",
                   "aten::addcdiv_", "aten::sum", "aten::mean"}
CAST_OPS = {"aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::_copy_from",
            "aten::_copy_from_and_resize"}
ZERO_OPS = {"aten::fill_", "aten::zero_", "aten::zeros", "aten::zeros_like", "aten::new_zeros", "aten::full",
            "aten::index_fill_"}
# clipping (optim.clip_gradients) and fused AdamW; the loop's other optimizer work runs under Optimizer.* labels
OPTIMIZER_OPS = {"aten::_fused_adamw_", "aten::_fused_adam_", "aten::linalg_vector_norm", "aten::_foreach_norm",
                 "aten::_foreach_mul_", "aten::stack"}
EMBEDDING_BACKWARD_OPS = {"aten::embedding_backward", "aten::embedding_dense_backward",
                          "aten::embedding_sparse_backward", "aten::_coalesce", "aten::coalesce"}


def category(op: str, within: Sequence[str] = ()) -> str:
    """The category of an op's self time: by the labels and autograd nodes it ran within, else by its name.

    `within`: the names of the events around it, outermost first (a record_function label, the
    autograd node of a backward op such as `autograd::engine::evaluate_function: EmbeddingBackward0`).
    """
    names = (*within, op)
    if op == STEP_LABEL:
        return OUTSIDE
    if any(n.startswith("Optimizer.") or n == ROW_UPDATE_LABEL for n in names):
        return OPTIMIZER
    if any(n == COALESCE_LABEL or "EmbeddingBackward" in n for n in names) or op in EMBEDDING_BACKWARD_OPS:
        return EMBEDDING_BACKWARD
    # torch.where and addcmul are FastDropout's alone in this model, so WhereBackward0 and AddcmulBackward0 are a
    # dropout's backward (with the dropout_add lever, addcmul is also the residual's add)
    if any(n == DROPOUT_LABEL or "WhereBackward" in n or "AddcmulBackward" in n or "NativeDropoutBackward" in n
           for n in names) \
            or "dropout" in op or "bernoulli" in op:
        return DROPOUT
    if op in MATMUL_OPS or op.startswith(("aten::_scaled_dot_product", "aten::scaled_dot_product", "mkldnn::",
                                          "aten::mkldnn_", "onednn::")):
        return MATMUL
    if op in SOFTMAX_OPS:
        return SOFTMAX
    if op in LAYER_NORM_OPS:
        return LAYER_NORM
    if op in CAST_OPS:
        return CASTS
    if op in ZERO_OPS:
        return ZEROS
    if op in OPTIMIZER_OPS:
        return OPTIMIZER
    if op in ELEMENTWISE_OPS:
        return ELEMENTWISE
    return OTHER


def breakdown(rows: Iterable[tuple]) -> dict[str, float]:
    """Time by category, every category present and in CATEGORIES order, from (op, time) or (op, time, within) rows."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for op, seconds, *within in rows:
        totals[category(op, within[0] if within else ())] += seconds
    return totals


def top_ops(rows: Iterable[tuple], n: int = 15) -> list[dict]:
    """The n ops with the most self time, each told apart by its category and the event it ran in (`inside`:
    an aten::copy_ inside aten::addmm is its bias broadcast, not a cast), with their call counts."""
    time_of, calls = defaultdict(float), defaultdict(int)
    for op, seconds, *within in rows:
        within = within[0] if within else ()
        key = (op, category(op, within), within[-1] if within and within[-1] != STEP_LABEL else "")
        time_of[key] += seconds
        calls[key] += 1
    ranked = sorted(time_of, key=time_of.get, reverse=True)[:n]
    return [{"op": op, "category": cat, "inside": inside, "time": time_of[(op, cat, inside)],
             "calls": calls[(op, cat, inside)]} for op, cat, inside in ranked]


# ---- the profile --------------------------------------------------------------------------------

def profiler_rows(events) -> tuple[list[tuple[str, float, tuple[str, ...]]], float]:
    """(op, self seconds, names of the events around it) for every event; and the steps' wall seconds."""
    rows, wall = [], 0.0
    for event in events:
        within, parent = [], event.cpu_parent
        while parent is not None:
            within.append(parent.name)
            parent = parent.cpu_parent
        rows.append((event.name, event.self_cpu_time_total / 1e6, tuple(reversed(within))))
        if event.name == STEP_LABEL:
            wall += event.cpu_time_total / 1e6
    return rows, wall


def label_dropout(model):
    """Hooks that wrap each FastDropout's forward and add_to (residual + dropout) in DROPOUT_LABEL; returns
    their handles."""
    import torch

    from bertfit.model import FastDropout

    open_labels = {}

    def enter(module, args):
        open_labels[id(module)] = torch.autograd.profiler.record_function(DROPOUT_LABEL).__enter__()

    def leave(module, args, output):
        open_labels.pop(id(module)).__exit__(None, None, None)

    class Unlabel:
        """Takes the labelled add_to off a module again, as a hook handle does."""

        def __init__(self, module):
            self.module = module

        def remove(self):
            del self.module.add_to

    def labelled_add_to(module):
        plain = module.add_to

        def add_to(residual, x):
            if not module.draws(x):  # evaluation: a plain residual add, no dropout
                return plain(residual, x)
            with torch.autograd.profiler.record_function(DROPOUT_LABEL):
                return plain(residual, x)

        module.add_to = add_to
        return Unlabel(module)

    handles = []
    for module in model.modules():
        if isinstance(module, FastDropout):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave),
                        labelled_add_to(module)]
    return handles


def labelled_row_grads(model, lazy: bool):
    """optim.EmbeddingRowGrads whose two calls from the loop run under labels of their own (nothing else changes)."""
    import torch

    from bertfit.optim import EmbeddingRowGrads

    class Labelled(EmbeddingRowGrads):
        def coalesce(self) -> None:
            with torch.autograd.profiler.record_function(COALESCE_LABEL):
                super().coalesce()

        def before_step(self, optimizer) -> None:
            with torch.autograd.profiler.record_function(ROW_UPDATE_LABEL):
                super().before_step(optimizer)

    return Labelled(model, lazy)


def measure(run_step, steps: int, warmup: int, model) -> dict:
    """Warm up, time `steps` calls of run_step(i) without the profiler, then profile the same calls."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for i in range(warmup):
        run_step(i)
    times = []
    for i in range(warmup, warmup + steps):
        start = time.perf_counter()
        run_step(i)
        times.append(time.perf_counter() - start)
    handles = label_dropout(model)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(warmup, warmup + steps):
                with torch.autograd.profiler.record_function(STEP_LABEL):
                    run_step(i)
    finally:
        for handle in handles:
            handle.remove()
    rows, wall = profiler_rows(prof.events())
    step_ms = 1000 * float(np.mean(times))
    profiled_ms = 1000 * wall / steps
    categories = {name: {"ms": 1000 * seconds / steps, "share": seconds / wall if wall else 0.0}
                  for name, seconds in breakdown(rows).items()}
    ops = [{"op": o["op"], "category": o["category"], "inside": o["inside"], "ms": 1000 * o["time"] / steps,
            "share": o["time"] / wall if wall else 0.0, "calls_per_step": o["calls"] / steps} for o in top_ops(rows)]
    return {"steps": steps, "warmup": warmup, "step_ms": step_ms, "step_ms_values": [1000 * t for t in times],
            "profiled_step_ms": profiled_ms, "categories": categories, "top_ops": ops}


# ---- the shapes ---------------------------------------------------------------------------------

def generated_sentences(tokenizer, n: int, seed: int, low: int = 10, high: int = 30):
    """n sequences `[CLS] words [SEP]` of low..high tokens (uniform), words drawn from the vocabulary's
    ordinary tokens; label_ids alternate."""
    from bertfit.batching import Features
    from bertfit.tokenization import special_ids

    special = special_ids(tokenizer)
    rng = np.random.default_rng(seed)
    vocab = tokenizer.get_vocab_size()
    first_word = 1000 if vocab > 2000 else 5  # BERT vocabularies keep [unused] tokens below 1000
    ids = [[special.cls, *rng.integers(first_word, vocab, size=length - 2).tolist(), special.sep]
           for length in rng.integers(low, high + 1, size=n)]
    return Features.from_lists(ids, [[0] * len(x) for x in ids], label_ids=np.arange(n) % 2)


def generated_windows(tokenizer, n: int, seed: int, length: int = 384, question: int = 16):
    """n windows `[CLS] question [SEP] context [SEP]` of `length` tokens, answers at random context spans."""
    from bertfit.batching import Features
    from bertfit.tokenization import special_ids

    special = special_ids(tokenizer)
    rng = np.random.default_rng(seed)
    vocab = tokenizer.get_vocab_size()
    first_word = 1000 if vocab > 2000 else 5
    context = length - question - 3
    ids = [[special.cls, *rng.integers(first_word, vocab, size=question).tolist(), special.sep,
            *rng.integers(first_word, vocab, size=context).tolist(), special.sep] for _ in range(n)]
    types = [[0] * (question + 2) + [1] * (context + 1) for _ in range(n)]
    starts = rng.integers(question + 2, length - 10, size=n)
    return Features.from_lists(ids, types, start_positions=starts, end_positions=starts + rng.integers(0, 8, size=n))


def sst2_shape(args, tokenizer, batches_needed: int):
    """Training and inference features, the settings and the loss of the SST-2 shape, and where the data came from."""
    from bertfit.recipes.glue import loss_fn
    from bertfit.settings import glue_settings
    from bertfit.tasks import glue, glue_encoding, glue_tsv

    if args.data_dir:
        train_examples = glue_tsv.read_glue_split("sst2", args.data_dir, "train")
        dev_examples = glue_tsv.read_glue_split("sst2", args.data_dir, "dev")
        read = len(train_examples)
        # one length-sorted group of the loop's batch order is enough to draw every step from
        keep = min(read, max(32 * batches_needed, 32 * 256))
        train_examples = replace(train_examples, texts_a=train_examples.texts_a[:keep],
                                 labels=train_examples.labels[:keep], indices=train_examples.indices[:keep])
        dev_examples = replace(dev_examples, texts_a=dev_examples.texts_a[:128], labels=dev_examples.labels[:128],
                               indices=dev_examples.indices[:128])
        train, _ = glue_encoding.encode(train_examples, tokenizer, 128)
        dev, _ = glue_encoding.encode(dev_examples, tokenizer, 128)
        source = (f"SST-2 from {args.data_dir}: batches of the first {len(train)} training sentences in bertfit's "
                  f"length-grouped order; the first {len(dev)} dev sentences")
    else:
        read = 67_349  # SST-2's training set: the settings its defaults choose for the whole set
        train = generated_sentences(tokenizer, max(32 * batches_needed, 32 * 256), args.seed)
        dev = generated_sentences(tokenizer, 128, args.seed + 1)
        source = "generated sentences of 10-30 tokens (no --data-dir), in bertfit's length-grouped order"
    if len(train) < 32 * batches_needed:
        sys.exit(f"{args.data_dir}: SST-2's training file has {len(train)} sentences; --warmup, --steps and "
                 f"--first-pass take {32 * batches_needed}")
    settings = replace(glue_settings("sst2", read, {}), precision=args.precision, seed=args.seed)
    return train, dev, settings, loss_fn(glue.resolve_task("sst2")), source


def squad_shape(args, tokenizer, batches_needed: int):
    from bertfit.recipes.squad import span_loss
    from bertfit.settings import SQUAD_DEFAULTS

    settings = replace(SQUAD_DEFAULTS, precision=args.precision, seed=args.seed)
    train = generated_windows(tokenizer, settings.batch_size * batches_needed, args.seed)
    dev = generated_windows(tokenizer, settings.eval_batch_size, args.seed + 1)
    return train, dev, settings, span_loss, "generated 384-token windows (a 16-token question, the rest context)"


def profile_shape(shape: str, args, peak: dict) -> dict:
    """Training steps and inference calls of one shape, measured and profiled; with --levers, the training step
    also with every lever of `bertfit.step_levers` off (the plain path) and with each compared lever alone on; and
    the loop's first pass over its first batches against a second pass over the same batches."""
    import torch

    from bertfit import predicting, step_levers, training
    from bertfit.batching import length_grouped_batches
    from bertfit.devices import resolve_precision, tune_allocator
    from bertfit.pretrained import embedded_model_path, load_pretrained
    from bertfit.tokenization import special_ids

    device = torch.device("cpu")
    head = "classification" if shape == "sst2" else "qa"
    model, tokenizer = load_pretrained(embedded_model_path(), head=head)
    pad_id = special_ids(tokenizer).pad
    steps = args.steps or DEFAULT_STEPS[shape]
    first_pass = args.first_pass if args.first_pass is not None else DEFAULT_FIRST_PASS[shape]
    batches_needed = max(args.warmup + steps, first_pass)
    train, dev, settings, loss_fn, source = (sst2_shape if shape == "sst2" else squad_shape)(
        args, tokenizer, batches_needed)
    dtype = resolve_precision(settings.precision, device)
    batches = length_grouped_batches(train.lengths, settings.batch_size, settings.seed, 0)[:batches_needed]
    chosen = dict(step_levers.ON)  # what this CPU kind runs by default
    # what training.fit sets up around the loop: the allocator, the embeddings' row-wise gradients
    tune_allocator(device)
    lazy = settings.lazy_embeddings and dtype != torch.float16

    def training_run(levers: dict, run) -> tuple[dict, torch.nn.Module]:
        """run(trainer, model) on a fresh model and trainer, the levers set as given, and restored after."""
        torch.manual_seed(args.seed)
        fresh, _ = load_pretrained(embedded_model_path(), head=head)
        row_grads = labelled_row_grads(fresh, lazy)
        step_levers.ON.update(levers)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-profile-run-") as run_dir:
                trainer = training.Trainer(fresh, train, loss_fn, lambda model: {}, lambda model, metrics: None,
                                           settings, Path(run_dir), pad_id, device, row_grads)
                fresh.train()
                return run(trainer, fresh), fresh
        finally:
            row_grads.restore()
            step_levers.ON.update(chosen)

    flops = {}
    lengths = np.concatenate([train.lengths[b] for b in batches[args.warmup:args.warmup + steps]])
    widths = [int(train.lengths[b].max()) for b in batches[args.warmup:args.warmup + steps]]
    flops["train"] = common.training_flops(model.bert.config, **common.length_stats(lengths)) / steps

    def with_flops(figures: dict) -> dict:
        figures.update(batch_size=settings.batch_size, mean_tokens=float(lengths.mean()),
                       mean_padded_width=float(np.mean(widths)), flops_per_step=flops["train"],
                       mfu_percent=mfu(flops["train"], figures["step_ms"], peak))
        return figures

    # the first pass first, while this process has run no step of this shape
    first = None
    if first_pass:
        first, _ = training_run(chosen, lambda trainer, _: first_pass_figures(trainer, batches[:first_pass],
                                                                              train.lengths))
    steady = lambda trainer, fresh: measure(lambda i: trainer.step(batches[i]), steps, args.warmup, fresh)  # noqa: E731
    levers = {}
    if args.levers:
        levers["plain"] = with_flops(training_run(dict.fromkeys(step_levers.NAMES, False), steady)[0])
        for name in args.levers:
            levers[name] = with_flops(training_run({**dict.fromkeys(step_levers.NAMES, False), name: True},
                                                   steady)[0])
    train_figures, model = training_run(chosen, steady)
    train_figures = with_flops(train_figures)

    per_token = shape == "squad"
    model.eval()
    infer_figures = measure(lambda i: predicting.predict(model, dev, pad_id, device, settings.eval_batch_size,
                                                         settings.precision, per_token=per_token),
                            args.inference_steps, min(args.warmup, 1), model)
    stats = common.length_stats(dev.lengths)
    flops["inference"] = common.training_flops(model.bert.config, **stats) / 3  # a forward pass alone
    infer_figures.update(batch_size=len(dev), mean_tokens=float(dev.lengths.mean()),
                         tokens_per_batch_cap=predicting.CPU_INFERENCE_TOKENS, flops_per_step=flops["inference"],
                         mfu_percent=mfu(flops["inference"], infer_figures["step_ms"], peak))
    settings_used = {"batch_size": settings.batch_size, "eval_batch_size": settings.eval_batch_size,
                     "attention_dropout": settings.attention_dropout, "lazy_embeddings": settings.lazy_embeddings,
                     "max_grad_norm": settings.max_grad_norm, "precision": settings.precision,
                     "resolved_precision": precision_name(dtype), "seed": settings.seed, "data": source,
                     "levers_on": [name for name, on in chosen.items() if on]}
    return {"shape": shape, "settings": settings_used, "training": train_figures, "inference": infer_figures,
            **({"levers": levers} if levers else {}), **({"first_pass": first} if first else {})}


# --steps and --first-pass by shape when not given: a SQuAD step takes 20 SST-2 steps' time
DEFAULT_STEPS = {"sst2": 20, "squad": 5}
DEFAULT_FIRST_PASS = {"sst2": 40, "squad": 2}


def mfu(flops: float, ms: float, peak: dict) -> float:
    return 100 * flops / (ms / 1000) / (peak["peak_gflops"] * 1e9)


def first_pass_figures(trainer, batches: list, lengths: np.ndarray) -> dict:
    """The loop's first steps, each timed on its first pass and again on a second pass over the same batches.

    What the first pass costs beyond the second is warm-up: the first step's (the optimizer's state,
    the first allocations) and each new padded width's first step (kernels and buffers set up for a
    shape). A step whose width came before in the first pass shows what the difference is without it.
    """
    passes = []
    for _ in range(2):
        times = []
        for batch in batches:
            start = time.perf_counter()
            trainer.step(batch)
            times.append(1000 * (time.perf_counter() - start))
        passes.append(times)
    widths = [int(lengths[b].max()) for b in batches]
    new = [i > 0 and widths[i] not in widths[:i] for i in range(len(batches))]
    extra = [a - b for a, b in zip(*passes)]
    new_extra = [e for e, n in zip(extra[1:], new[1:]) if n]
    seen_extra = [e for e, n in zip(extra[1:], new[1:]) if not n]
    return {"steps": len(batches), "widths": widths, "first_pass_ms": passes[0], "second_pass_ms": passes[1],
            "first_pass_total_ms": sum(passes[0]), "second_pass_total_ms": sum(passes[1]),
            "first_step_extra_ms": extra[0], "new_widths": len(new_extra),
            "new_width_extra_ms_mean": float(np.mean(new_extra)) if new_extra else None,
            "seen_width_extra_ms_mean": float(np.mean(seen_extra)) if seen_extra else None,
            "warm_up_share_of_first_pass": (sum(passes[0]) - sum(passes[1])) / sum(passes[0])}


MFU_NOTE = ("MFU: the whole model's matmul FLOPs on real tokens (pads not counted; a training step counts 3 "
            "forward passes) over the unprofiled time, against the matmul peak above.")
CLS_ONLY_NOTE = "The classifier's last block computes [CLS] alone, which skips about 14% of the FLOPs counted."


def precision_name(dtype) -> str:
    return str(dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")


# ---- the report ---------------------------------------------------------------------------------

def print_phase(title: str, figures: dict, unit: str) -> None:
    print(f"\n{title}: {figures['step_ms']:.1f} ms per {unit} ({figures['steps']} {unit}s after {figures['warmup']} "
          f"warm-up), {figures['profiled_step_ms']:.1f} ms under the profiler; "
          f"{figures['flops_per_step'] / 1e9:.1f} GFLOP per {unit}, MFU {figures['mfu_percent']:.1f}%")
    width = max(len(c) for c in CATEGORIES)
    print(f"  {'category':<{width}}  {'ms/' + unit:>10}  {'share':>6}")
    for name, value in figures["categories"].items():
        print(f"  {name:<{width}}  {value['ms']:>10.2f}  {100 * value['share']:>5.1f}%")
    print(f"  top {len(figures['top_ops'])} ops by self CPU time:")
    names = [o["op"] + (f" in {short(o['inside'])}" if o["inside"] else "") for o in figures["top_ops"]]
    op_width = max([len(name) for name in names] + [2])
    for name, o in zip(names, figures["top_ops"]):
        print(f"    {name:<{op_width}}  {o['ms']:>9.2f} ms  {100 * o['share']:>5.1f}%  "
              f"{o['calls_per_step']:>7.1f} calls  ({o['category']})")


def outside_matmul_ms(figures: dict) -> float:
    """A profiled step's time outside matrix products (every category but MATMUL, the Python between ops included)."""
    return figures["profiled_step_ms"] - figures["categories"][MATMUL]["ms"]


def print_levers(result: dict) -> None:
    """The training step with each lever against the plain path; the first pass against the second."""
    if result.get("levers"):
        sides = {**result["levers"], "default": result["training"]}
        print(f"\n{result['shape']} training step by lever (ms/step; plain: every lever off; default: this kind's "
              f"choice, {', '.join(result['settings']['levers_on']) or 'none'}):")
        width = max(len(c) for c in CATEGORIES)
        print(f"  {'':<{width}}" + "".join(f"  {name:>12}" for name in sides))
        for name in CATEGORIES:
            print(f"  {name:<{width}}" + "".join(f"  {f['categories'][name]['ms']:>12.2f}" for f in sides.values()))
        for label, value in (("outside matrix products", outside_matmul_ms),
                             ("profiled step", lambda f: f["profiled_step_ms"]), ("step", lambda f: f["step_ms"]),
                             ("MFU %", lambda f: f["mfu_percent"])):
            print(f"  {label:<{width}}" + "".join(f"  {value(f):>12.2f}" for f in sides.values()))
    first = result.get("first_pass")
    if first:
        print(f"\n{result['shape']} loop, first {first['steps']} batches: first pass {first['first_pass_total_ms']:.0f} "
              f"ms, second pass {first['second_pass_total_ms']:.0f} ms ({100 * first['warm_up_share_of_first_pass']:.1f}% "
              f"of the first is warm-up); the first step {first['first_step_extra_ms']:.1f} ms more; "
              f"{first['new_widths']} new widths after it, each "
              f"{first['new_width_extra_ms_mean'] if first['new_width_extra_ms_mean'] is not None else float('nan'):.1f}"
              f" ms more on its first pass (a width seen before: "
              f"{first['seen_width_extra_ms_mean'] if first['seen_width_extra_ms_mean'] is not None else float('nan'):.1f}"
              f" ms)")


def short(event: str) -> str:
    """An enclosing event's name as the tables show it: an autograd node by its own name."""
    return event.removeprefix("autograd::engine::evaluate_function: ")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the GLUE root, or its SST-2 folder (default: generated sentences)")
    parser.add_argument("--shapes", default="sst2,squad", help="comma-separated, of sst2, squad (default both)")
    parser.add_argument("--steps", type=int, help="steps timed, then profiled (default 20 for sst2, 5 for squad)")
    parser.add_argument("--warmup", type=int, default=3, help="training steps before the timed ones (default 3; "
                                                                "inference: one call, or none with 0)")
    parser.add_argument("--inference-steps", type=int, default=3,
                        help="predict calls timed, then profiled, each over 128 sequences (default 3)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 with native bf16 instructions, else fp32, as bertfit decides (default auto)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--levers", default="all", help="the levers of bertfit.step_levers to measure alone "
                        "against the plain path (all of them off), comma-separated, all or none (default all)")
    parser.add_argument("--first-pass", type=int, help="batches of the loop timed on a first and a second pass "
                        "(default 40 for sst2, 2 for squad; 0: none)")
    parser.add_argument("--seed", type=int, default=42, help="the batch order, dropout and generated data (default 42)")
    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        parser.error(f"--shapes: {', '.join(unknown) or 'none given'}; choose from {', '.join(SHAPES)}")
    if (args.steps is not None and args.steps < 1) or args.inference_steps < 1 or args.warmup < 0 \
            or (args.first_pass is not None and args.first_pass < 0):
        parser.error("--steps and --inference-steps must be at least 1, --warmup and --first-pass at least 0")
    from bertfit import step_levers

    args.levers = {"none": [], "all": list(step_levers.NAMES)}.get(args.levers) or [
        n.strip() for n in args.levers.split(",") if n.strip()]
    if unknown := [n for n in args.levers if n not in step_levers.NAMES]:
        parser.error(f"--levers: unknown {', '.join(unknown)}; choose from {', '.join(step_levers.NAMES)}, or none")

    import torch

    torch.set_num_threads(args.threads)
    import torch._dynamo  # noqa: F401  # the first optimizer imports it: keep that out of the warm-up's share

    cpu = common.cpu_kind()
    print(common.cpu_line(cpu))
    resolved = common.resolved_precision(args.precision)
    print(f"precision {resolved} (--precision {args.precision}), {args.threads} threads; measuring the {resolved} "
          f"matmul peak", flush=True)
    peak = common.matmul_peak(resolved)
    print(f"{resolved} matmul peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['matmul_size']}^2)", flush=True)
    from bertfit.errors import BertfitError

    for shape in shapes:
        try:
            result = profile_shape(shape, args, peak)
        except BertfitError as error:  # a GLUE folder without SST-2, a malformed row: said once, no traceback
            sys.exit(f"error: {error}")
        print(f"\n== {shape}: {result['settings']['data']}")
        print_phase(f"{shape} training step (batch {result['training']['batch_size']}, mean "
                    f"{result['training']['mean_tokens']:.1f} tokens, padded to {result['training']['mean_padded_width']:.1f})",
                    result["training"], "step")
        print_phase(f"{shape} inference, predict over {result['inference']['batch_size']} sequences (mean "
                    f"{result['inference']['mean_tokens']:.1f} tokens)", result["inference"], "call")
        print_levers(result)
        print(MFU_NOTE + (" " + CLS_ONLY_NOTE if shape == "sst2" else ""))
        name = f"profile-{shape}" + ("" if args.precision == "auto" else f"-{args.precision}")
        common.write_figures(name, __file__, argv, args.figures_dir,
                             figures={**result, "peak": peak, "categories": list(CATEGORIES),
                                      "notes": [MFU_NOTE, *([CLS_ONLY_NOTE] if shape == "sst2" else [])]},
                             settings={"bertfit": result["settings"], "steps": result["training"]["steps"],
                                       "warmup": args.warmup, "levers": args.levers,
                                       "inference_steps": args.inference_steps},
                             precision={"bertfit": result["settings"]["resolved_precision"]}, threads=args.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
