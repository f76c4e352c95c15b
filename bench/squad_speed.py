"""SQuAD v1.1 fine-tuning speed and F1: bertfit against transformers' Trainer, side by side in one run.

    python bench/squad_speed.py --train-file ../shared/data/squad/dev-v1.1.json --samples 800              # same math
    python bench/squad_speed.py --train-file ../shared/data/squad/dev-v1.1.json --samples 800 --attention-dropout 0.1
    python bench/squad_speed.py --train-file ../shared/data/squad/dev-v1.1.json --samples 800 --compare defaults

Both sides fine-tune the embedded MiniLM on windows of the first N questions of --train-file, then
predict the evaluation windows. Two comparisons (--compare):
- same-math (default): the same computation on both sides: --epochs (1), --lr (5e-5), 10% warmup
  then linear decay, weight decay 0.01, --batch-size (16), 384 tokens with stride 128, the
  precision (--precision auto: bf16 on CPUs with native bf16, else fp32), the attention dropout
  (bertfit's training default, 0, set in the Trainer's model config too; --attention-dropout 0.1
  runs both at the model's own), and exact dense AdamW on bertfit's side (lazy_embeddings off);
- defaults: `bertfit squad`'s defaults (settings.SQUAD_DEFAULTS) against the Trainer with run_qa's
  README settings (lr 3e-5, 2 epochs, batch 12, 384 tokens, stride 128, no warmup or weight decay,
  fp32, eval batch 8), both with dynamic padding.
Both sides' settings are printed first, every one that differs named. Without --eval-file the
evaluation questions are the last 10 articles of the training file, and the first N questions
must come before them: with dev-v1.1.json that is the squad-mini split.

Both preprocessings cut long contexts into windows overlapping by --doc-stride tokens, as run_qa
does; should their window counts ever differ, both train on the first K windows of their own, K the
smaller count, unless --train-windows says otherwise. Tokenizing and decoding are outside the
clocks. MFU is measured against a matmul peak in each side's precision, in the same run. With
--seeds both sides run once per seed, the same seeds, and F1 / EM are mean ± std. The last line is
`ratio train X.XX eval Y.YY`, bertfit's windows/s over the Trainer's (higher is better).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

COLUMNS = [
    ("side", "side", ""),
    ("train win/s", "train_examples_per_s", ".1f"),
    ("train tok/s", "train_tokens_per_s", ".0f"),
    ("train s", "train_seconds", ".1f"),
    ("MFU %", "train_mfu_percent", ".1f"),
    ("eval win/s", "eval_examples_per_s", ".1f"),
    ("eval tok/s", "eval_tokens_per_s", ".0f"),
    ("dev F1", "f1", ".2f"),
    ("dev EM", "exact_match", ".2f"),
    ("peak RSS MB", "peak_rss_mb", ".0f"),
]
EVAL_ARTICLES = 10  # squad-mini: the last 10 articles of the file are for evaluation
N_BEST, MAX_ANSWER_LENGTH = 20, 30
BERTFIT_BATCHES = common.BERTFIT_BATCHES
RUN_QA = common.RUN_QA


def side_settings(args) -> dict[str, dict]:
    """What each side trains with under --compare, as common.SETTING_NAMES names them."""
    from bertfit.recipes.squad import SquadOptions
    from bertfit.settings import SQUAD_DEFAULTS

    if args.compare == "same-math":
        dropout = args.attention_dropout if args.attention_dropout is not None \
            else common.bertfit_default_attention_dropout()
        shared = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, warmup_ratio=0.1,
                      weight_decay=0.01, precision=common.resolved_precision(args.precision),
                      attention_dropout=dropout, optimizer=common.EXACT_ADAMW, max_seq_length=args.max_seq_length,
                      doc_stride=args.doc_stride, eval_batch_size=args.eval_batch_size, seed=args.seed)
        return {"bertfit": {**shared, "train_batches": BERTFIT_BATCHES},
                "peer": {**shared, "train_batches": "group_by_length"}}
    ours = SQUAD_DEFAULTS
    bertfit = dict(epochs=ours.epochs, lr=ours.lr, batch_size=ours.batch_size, warmup_ratio=ours.warmup_ratio,
                   weight_decay=ours.weight_decay, precision=common.resolved_precision(ours.precision),
                   attention_dropout=ours.attention_dropout if args.attention_dropout is None else args.attention_dropout,
                   optimizer=common.LAZY_ADAMW if ours.lazy_embeddings else common.EXACT_ADAMW,
                   train_batches=BERTFIT_BATCHES, max_seq_length=SquadOptions.max_seq_length,
                   doc_stride=SquadOptions.doc_stride, eval_batch_size=ours.eval_batch_size, seed=args.seed)
    peer = dict(**RUN_QA, optimizer=common.EXACT_ADAMW, seed=args.seed,
                attention_dropout=common.model_attention_dropout() if args.attention_dropout is None
                else args.attention_dropout)
    return {"bertfit": bertfit, "peer": peer}


def read_questions(args):
    """The first N training questions and the evaluation questions, read once for both sides alike."""
    from bertfit.tasks import squad

    questions, stats = squad.read_squad(args.train_file)
    if stats.version_2:
        sys.exit(f"{args.train_file}: has unanswerable questions; this benchmark decodes SQuAD v1.1 only")
    if args.eval_file:
        eval_questions = squad.read_squad(args.eval_file)[0]
    else:
        titles = list(dict.fromkeys(q.title for q in questions))
        held_out = set(titles[-EVAL_ARTICLES:])
        eval_questions = [q for q in questions if q.title in held_out]
        questions = [q for q in questions if q.title not in held_out]
        if args.samples > len(questions):
            sys.exit(f"--samples {args.samples}: only {len(questions)} questions come before the last "
                     f"{EVAL_ARTICLES} articles, which are held out for evaluation (or pass --eval-file)")
    return questions[: args.samples], eval_questions[: args.eval_samples or None]


# ---- bertfit ------------------------------------------------------------------------------------

def bertfit_windows(questions, tokenizer, settings: dict, training: bool):
    from bertfit.tasks import squad

    return squad.make_windows(questions, tokenizer, settings["max_seq_length"], settings["doc_stride"],
                              training=training)


def bertfit_side(args) -> dict:
    import torch

    from bertfit import squad_metrics
    from bertfit.pretrained import embedded_model_path, load_pretrained
    from bertfit.recipes.squad import span_loss
    from bertfit.tasks import squad
    from bertfit.tokenization import special_ids

    train_questions, eval_questions = read_questions(args)
    settings = side_settings(args)["bertfit"]
    torch.manual_seed(args.seed)  # the new span head's initialisation, as finetune_squad seeds it
    model, tokenizer = load_pretrained(embedded_model_path(), head="qa")
    pad_id = special_ids(tokenizer).pad
    train, _ = bertfit_windows(train_questions, tokenizer, settings, training=True)
    windows_available = len(train)
    train = train.select(np.arange(args.train_windows)) if args.train_windows < len(train) else train
    dev, dev_windows = bertfit_windows(eval_questions, tokenizer, settings, training=False)
    ours = common.bertfit_fit_and_predict(model, train, dev, span_loss, pad_id, settings, per_token=True)
    result, (start_logits, end_logits) = ours["result"], ours["outputs"]
    predictions = squad.decode(eval_questions, dev_windows, start_logits, end_logits, N_BEST, MAX_ANSWER_LENGTH)
    scores = squad_metrics.squad_v1_scores(eval_questions, predictions.answers)

    train_lengths = common.length_stats(train.lengths)
    return {
        "train_questions": len(train_questions),
        "windows_available": windows_available,
        "train_set": len(train),
        "train_examples": result.train_examples_seen,  # over every epoch
        "train_steps": result.steps,
        "train_tokens": train_lengths["tokens"] * settings["epochs"],
        "train_seconds": ours["train_seconds"],
        "train_loop_seconds": result.train_seconds,  # first step to last, without setup and the final checkpoint
        "train_flops": common.training_flops(model.bert.config, **train_lengths) * settings["epochs"],
        "eval_questions": len(eval_questions),
        "eval_examples": len(dev),
        "eval_tokens": int(dev.lengths.sum()),
        "eval_seconds": ours["eval_seconds"],
        **scores,
    }


# ---- the peer: transformers' run_qa preprocessing and postprocessing ----------------------------

def peer_tokenize(questions, tokenizer, settings: dict):
    """run_qa's call: the context alone is truncated, long ones overflow into windows overlapping by doc_stride."""
    return tokenizer([q.question.lstrip() for q in questions], [q.context for q in questions],
                     truncation="only_second", max_length=settings["max_seq_length"], stride=settings["doc_stride"],
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)


def peer_train_windows(questions, tokenizer, settings: dict) -> dict:
    """run_qa's prepare_train_features: token start/end of the first answer, [CLS] when the window lacks it."""
    encoded = peer_tokenize(questions, tokenizer, settings)
    starts, ends = [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        cls_index = encoded["input_ids"][i].index(tokenizer.cls_token_id)
        sequence_ids = encoded.sequence_ids(i)
        answers = questions[encoded["overflow_to_sample_mapping"][i]].answers
        if not answers:  # v2.0: an unanswerable question points at [CLS]
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char, end_char = answers[0].start, answers[0].start + len(answers[0].text)
        first = sequence_ids.index(1)  # the window's first and last context tokens
        last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while first < len(offsets) and offsets[first][0] <= start_char:
            first += 1
        while offsets[last][1] >= end_char:
            last -= 1
        starts.append(first - 1)
        ends.append(last + 1)
    return {"input_ids": encoded["input_ids"], "token_type_ids": encoded["token_type_ids"],
            "attention_mask": encoded["attention_mask"], "start_positions": starts, "end_positions": ends}


def peer_eval_windows(questions, tokenizer, settings: dict) -> tuple[dict, list[int], list[list]]:
    """run_qa's prepare_validation_features: model inputs, each window's question, context-only offsets."""
    encoded = peer_tokenize(questions, tokenizer, settings)
    offsets = [[o if s == 1 else None for o, s in zip(window, encoded.sequence_ids(i))]
               for i, window in enumerate(encoded["offset_mapping"])]
    inputs = {k: encoded[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    return inputs, list(encoded["overflow_to_sample_mapping"]), offsets


def peer_answers(questions, question_of_window, offsets, start_logits, end_logits,
                 version_2: bool = False, null_threshold: float = 0.0) -> dict[str, str]:
    """run_qa's postprocess_qa_predictions: the best-scoring valid span over a question's windows.

    With version_2 (run_qa's --version_2_with_negative), "" when the lowest [CLS] score over the
    question's windows beats the best span's score by more than null_threshold (its default 0.0).
    """
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for w, q in enumerate(question_of_window):
        window_offsets = offsets[w]
        null[q] = min(null.get(q, np.inf), float(start_logits[w][0] + end_logits[w][0]))
        for s in np.argsort(start_logits[w])[-1 : -N_BEST - 1 : -1]:
            for e in np.argsort(end_logits[w])[-1 : -N_BEST - 1 : -1]:
                if s >= len(window_offsets) or e >= len(window_offsets):
                    continue  # batch padding
                if window_offsets[s] is None or window_offsets[e] is None:
                    continue  # not context
                if e < s or e - s + 1 > MAX_ANSWER_LENGTH:
                    continue
                score = float(start_logits[w][s] + end_logits[w][e])
                if q not in best or score > best[q][0]:
                    best[q] = (score, window_offsets[s][0], window_offsets[e][1])
    def answer(q: int, question) -> str:
        if q not in best or (version_2 and null[q] - best[q][0] > null_threshold):
            return ""
        return question.context[best[q][1] : best[q][2]]

    return {question.id: answer(q, question) for q, question in enumerate(questions)}


def peer_side(args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, set_seed

    from bertfit import squad_metrics
    from bertfit.pretrained import embedded_model_path

    train_questions, eval_questions = read_questions(args)
    settings = side_settings(args)["peer"]
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = Dataset.from_dict(peer_train_windows(train_questions, tokenizer, settings))
    windows_available = len(train)
    train = train.select(range(args.train_windows)) if args.train_windows < len(train) else train
    dev_inputs, question_of_window, dev_offsets = peer_eval_windows(eval_questions, tokenizer, settings)
    dev = Dataset.from_dict(dev_inputs)
    set_seed(args.seed)  # the new span head's initialisation, as run_qa seeds it
    model = AutoModelForQuestionAnswering.from_pretrained(
        path, attention_probs_dropout_prob=settings["attention_dropout"])

    peer = common.peer_fit_and_predict(model, tokenizer, train, dev, settings)
    output, config, (start_logits, end_logits) = peer["output"], peer["config"], peer["predictions"]
    answers = peer_answers(eval_questions, question_of_window, dev_offsets, start_logits, end_logits)
    scores = squad_metrics.squad_v1_scores(eval_questions, answers)

    train_lengths = common.length_stats([len(ids) for ids in train["input_ids"]])
    return {
        "train_questions": len(train_questions),
        "windows_available": windows_available,
        "train_set": len(train),
        "train_examples": len(train) * settings["epochs"],  # over every epoch
        "train_steps": output.global_step,
        "train_tokens": train_lengths["tokens"] * settings["epochs"],
        "train_seconds": peer["train_seconds"],
        "train_runtime": output.metrics["train_runtime"],  # the Trainer's own clock
        "train_flops": common.training_flops(config, **train_lengths) * settings["epochs"],
        "eval_questions": len(eval_questions),
        "eval_examples": len(dev),
        "eval_tokens": sum(len(ids) for ids in dev_inputs["input_ids"]),
        "eval_seconds": peer["eval_seconds"],
        **scores,
    }


def common_window_count(args) -> tuple[int, int]:
    """Training windows each preprocessing cuts from the same questions (tokenizing only)."""
    from transformers import AutoTokenizer

    from bertfit.pretrained import embedded_model_path, load_tokenizer

    questions, _ = read_questions(args)
    settings = side_settings(args)
    ours = len(bertfit_windows(questions, load_tokenizer(embedded_model_path()), settings["bertfit"],
                               training=True)[0])
    theirs = len(peer_train_windows(questions, AutoTokenizer.from_pretrained(embedded_model_path()),
                                    settings["peer"])["input_ids"])
    return ours, theirs


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--train-file", required=True, help="an official SQuAD v1.1 JSON file")
    parser.add_argument("--samples", type=int, required=True, help="train on the first N questions")
    parser.add_argument("--eval-file", help="evaluate here (default: the last 10 articles of --train-file)")
    parser.add_argument("--eval-samples", type=int, default=0, help="evaluate the first M questions (0: all)")
    parser.add_argument("--train-windows", type=int, default=0,
                        help="train on the first K windows (default: the smaller of the two sides' counts)")
    parser.add_argument("--epochs", type=int, default=1, help="same-math: epochs of both sides (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="same-math: both sides' batch (default 16)")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="same-math: both sides' (default 128)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="same-math: both sides' precision; auto: bf16 with native bf16 instructions, else "
                             "fp32, as bertfit decides (default auto)")
    parser.add_argument("--lr", type=float, default=5e-5, help="same-math: both sides' peak lr (default 5e-5)")
    parser.add_argument("--max-seq-length", type=int, default=384, help="same-math: both sides' (default 384)")
    parser.add_argument("--doc-stride", type=int, default=128, help="same-math: both sides' (default 128)")
    common.add_comparison_options(parser)
    args = parser.parse_args(argv)

    settings = side_settings(args)
    if not args.side:
        print(common.cpu_line(common.cpu_kind()))
        print("\n".join(common.settings_lines(args.compare, settings)), flush=True)
    if not args.side and not args.train_windows:
        args.train_windows = min(common_window_count(args))
        argv = [*argv, "--train-windows", str(args.train_windows)]
    results = common.run(__file__, args, argv, {"bertfit": bertfit_side, "peer": peer_side},
                         precisions={side["precision"] for side in settings.values()})
    if results is None:
        return
    peak = results.pop("peak")
    bertfit, peer = results["bertfit"][0], results["peer"][0]
    if bertfit["train_set"] != peer["train_set"]:
        sys.exit(f"the sides trained on different numbers of windows: {bertfit['train_set']} / {peer['train_set']}")
    ours, theirs = settings["bertfit"], settings["peer"]
    notes = [f"SQuAD: {bertfit['train_questions']} training questions -> {bertfit['windows_available']} / "
             f"{peer['windows_available']} windows (bertfit / peer); both trained on {bertfit['train_set']}, "
             f"{ours['epochs']:g} / {theirs['epochs']:g} epochs, batch {ours['batch_size']} / {theirs['batch_size']} "
             f"({bertfit['train_steps']} / {peer['train_steps']} steps)",
             f"{bertfit['eval_questions']} evaluation questions -> {bertfit['eval_examples']} / {peer['eval_examples']} "
             f"windows; {ours['precision']} / {theirs['precision']}, {bertfit['threads']} / {peer['threads']} "
             f"threads (bertfit / peer)",
             f"real tokens: train {bertfit['train_tokens']} / {peer['train_tokens']}, "
             f"eval {bertfit['eval_tokens']} / {peer['eval_tokens']} (bertfit / peer)",
             f"bertfit's loop alone (no setup, no final checkpoint): {bertfit['train_loop_seconds']:.1f}s; "
             f"the Trainer's own train_runtime: {peer['train_runtime']:.1f}s"]
    common.report(f"SQuAD v1.1 fine-tuning, {args.compare}", args, peak, results, COLUMNS, notes, settings,
                  scores=("f1", "exact_match"), name=common.comparison_name("squad-speed", args), script=__file__,
                  argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
