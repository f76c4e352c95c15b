"""Fine-tuning the embedded model as a bi-encoder: bertfit's `embed-train` against sentence-transformers' own `fit`,
the same loss, data, batch, epochs and schedule, seeds 1-3 on both sides; scored before and after.

    python bench/squad_mini.py ../shared/data/squad/dev-v1.1.json 38 squad1   # squad1-{train,validation,eval}.json
    python bench/embed_side_by_side.py --stsb-dir ../shared/data/glue/STS-B \\
        --squad-train squad1-train.json --squad-dev squad1-eval.json --seeds 1,2,3

- STS-B: scored pairs (train.tsv) with CoSENT; scored by the Spearman correlation of cosines on dev.tsv;
- SQuAD: (question, paragraph) pairs of --squad-train with in-batch negatives (MultipleNegativesRankingLoss);
  scored by retrieval on --squad-dev: each question against every paragraph of the file, MRR@10, recall@1, @10
  (squad-mini's split: training and evaluation articles apart, so no evaluation paragraph was trained on).
Every model, the embedded one before training included, is scored by sentence-transformers' own evaluators
(EmbeddingSimilarityEvaluator, InformationRetrievalEvaluator) on the model folder each side saved, so that the two
sides are scored by one definition; bertfit's own figure for its side is printed beside it. Each run is a process
of its own, the sides alternating seed by seed. The settings of both sides are printed first, the ratio line last.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TASKS = {"stsb": ("spearman_cosine", "cosent"), "squad": ("mrr@10", "mnrl")}


def read_data(args, task: str):
    """(train pairs, evaluation) as bertfit's recipe reads them: one reading for both sides."""
    from bertfit.recipes.embed import EmbedOptions, read_pairs

    if task == "stsb":
        options = EmbedOptions(label_column="score")
        train = read_pairs(str(Path(args.stsb_dir) / "train.tsv"), options)
        evaluation = read_pairs(str(Path(args.stsb_dir) / "dev.tsv"), options)
    else:
        options = EmbedOptions()
        train, evaluation = read_pairs(args.squad_train, options), read_pairs(args.squad_dev, options)
    return train.first(args.max_train_samples), evaluation.first(args.max_eval_samples)


def st_score(model_dir: str, evaluation, task: str) -> dict:
    """sentence-transformers' evaluator on a saved model folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (EmbeddingSimilarityEvaluator,
                                                                       InformationRetrievalEvaluator)

    model = SentenceTransformer(model_dir, device="cpu")
    if task == "stsb":
        evaluator = EmbeddingSimilarityEvaluator(evaluation.texts_a, evaluation.texts_b, evaluation.scores,
                                                 name="dev")
        scores = evaluator(model)
        return {"spearman_cosine": float(scores["dev_spearman_cosine"])}
    queries = {str(i): q for i, q in enumerate(evaluation.texts_a)}
    corpus = {str(i): d for i, d in enumerate(evaluation.documents)}
    relevant = {str(i): {str(d)} for i, d in enumerate(evaluation.relevant)}
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, name="dev", mrr_at_k=[10],
                                              accuracy_at_k=[1, 10], precision_recall_at_k=[1, 10],
                                              ndcg_at_k=[10], map_at_k=[10], show_progress_bar=False)
    scores = evaluator(model)
    return {"mrr@10": float(scores["dev_cosine_mrr@10"]), "recall@1": float(scores["dev_cosine_recall@1"]),
            "recall@10": float(scores["dev_cosine_recall@10"])}


def side(args) -> dict:
    """One run in this process: `before` (the embedded model as it ships), `bertfit` or `peer`, for one seed."""
    import torch

    from bertfit.pretrained import embedded_model_path

    task = args.task
    metric, loss = TASKS[task]
    train, evaluation = read_data(args, task)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as folder:
        if args.side == "before":
            return {**st_score(str(embedded_model_path()), evaluation, task), "train_pairs": len(train)}
        steps = math.ceil(len(train) / args.batch_size) * args.epochs
        warmup = math.ceil(0.1 * steps)
        if args.side == "bertfit":
            from bertfit.recipes.embed import EmbedOptions, finetune_embeddings
            from bertfit.settings import TrainSettings

            data = Path(folder) / "data"
            data.mkdir()
            options = EmbedOptions(train_file=write_pairs(train, data / "train.jsonl"),
                                   eval_file=write_pairs(evaluation, data / "eval.jsonl") if task == "stsb"
                                   else args.squad_dev, text_columns=("a", "b"),
                                   label_column="score" if train.scores is not None else None, loss=loss,
                                   max_eval_samples=args.max_eval_samples, output_dir=str(Path(folder) / "run"),
                                   quiet=True)
            settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                                     precision="fp32", warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0,
                                     attention_dropout=0.1, lazy_embeddings=False)
            results = finetune_embeddings(options, settings)
            return {**st_score(str(Path(folder) / "run" / "model"), evaluation, task),
                    "own_" + metric: results["metrics"][metric], "steps": results.get("steps", steps),
                    "train_seconds": results.get("train_seconds")}
        from sentence_transformers import InputExample, SentenceTransformer
        from sentence_transformers.sentence_transformer import losses
        from torch.utils.data import DataLoader

        torch.manual_seed(args.seed)
        model = SentenceTransformer(str(embedded_model_path()), device="cpu")
        if train.scores is not None:
            examples = [InputExample(texts=[a, b], label=float(s)) for a, b, s in
                        zip(train.texts_a, train.texts_b, train.scores)]
            objective = losses.CoSENTLoss(model)
        else:
            examples = [InputExample(texts=[a, b]) for a, b in zip(train.texts_a, train.texts_b)]
            objective = losses.MultipleNegativesRankingLoss(model)
        loader = DataLoader(examples, shuffle=True, batch_size=args.batch_size,
                            generator=torch.Generator().manual_seed(args.seed))
        model.fit(train_objectives=[(loader, objective)], epochs=args.epochs, warmup_steps=warmup,
                  optimizer_params={"lr": args.lr}, weight_decay=0.01, max_grad_norm=1.0, show_progress_bar=False)
        model.save(str(Path(folder) / "peer"))
        return {**st_score(str(Path(folder) / "peer"), evaluation, task), "steps": steps}


def write_pairs(pairs, path: Path) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for i, (a, b) in enumerate(zip(pairs.texts_a, pairs.texts_b)):
            record = {"a": a, "b": b}
            if pairs.scores is not None:
                record["score"] = pairs.scores[i]
            f.write(json.dumps(record) + "\n")
    return str(path)


def run_side(argv: list[str], name: str, task: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-embed-{name}-") as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, *argv, "--task", task, "--seed", str(seed), "--side", name,
                   "--result-file", str(result)]
        print(f"== {task} {name} seed {seed}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        if subprocess.run(command, stdout=sys.stderr).returncode != 0 or not result.exists():
            sys.exit(f"the {name} side failed; its output is above")
        return json.loads(result.read_text())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stsb-dir", help="GLUE's STS-B folder (train.tsv, dev.tsv)")
    parser.add_argument("--squad-train", help="SQuAD v1.1 JSON to train on (question, paragraph pairs)")
    parser.add_argument("--squad-dev", help="SQuAD v1.1 JSON to score retrieval on")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="both sides (default 16, sentence-transformers')")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-train-samples", type=int, help="train on the first N pairs only (a trial run)")
    parser.add_argument("--max-eval-samples", type=int, help="score the first N pairs or questions only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write every figure to this file")
    common.add_figures_option(parser)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        Path(args.result_file).write_text(json.dumps(side(args)))
        return
    tasks = [t for t, given in (("stsb", args.stsb_dir), ("squad", args.squad_train and args.squad_dev)) if given]
    if not tasks:
        sys.exit("give --stsb-dir, or --squad-train and --squad-dev, or both")
    print(f"both sides: the embedded all-MiniLM-L6-v2, fp32, batch {args.batch_size}, {args.epochs} epoch(s), lr "
          f"{args.lr:g} linear after 10% warmup, AdamW weight decay 0.01, gradient norm clipped at 1, dropout 0.1 "
          f"(attention too), {args.threads} threads; STS-B: CoSENT (scale 20); SQuAD: MultipleNegativesRankingLoss "
          f"(scale 20); seeds {', '.join(map(str, args.seeds))}", flush=True)
    print("differs: bertfit batches by length within groups of 256 batches (sentence-transformers shuffles), and its "
          "own seeds for shuffling and dropout; both scored by sentence-transformers' evaluators", flush=True)
    child = common._without_options(argv, ("--json", "--figures-dir", "--seeds"))
    figures, ratios = {}, {}
    for task in tasks:
        metric = TASKS[task][0]
        runs = {"before": [run_side(child, "before", task, args.seeds[0])]}
        for seed in args.seeds:
            for name in ("bertfit", "peer"):
                runs.setdefault(name, []).append(run_side(child, name, task, seed))
        rows = {name: common.over_seeds(values, (metric,)) for name, values in runs.items()}
        columns = [("side", "side", ""), (metric, metric, ".4f")]
        if task == "squad":
            columns += [("recall@1", "recall@1", ".4f"), ("recall@10", "recall@10", ".4f")]
        common.print_table(f"{task}: before and after fine-tuning (sentence-transformers' evaluator)",
                           {"embedded, before": rows["before"], "bertfit embed-train": rows["bertfit"],
                            "sentence-transformers fit": rows["peer"]}, columns)
        own = [r[f"own_{metric}"] for r in runs["bertfit"]]
        print(f"bertfit's own {metric} of its runs: {', '.join(f'{v:.4f}' for v in own)}")
        figures[task], ratios[task] = runs, rows["bertfit"][metric] / rows["peer"][metric]
    print(common.cpu_line(common.cpu_kind()))
    common.write_figures("embed-side-by-side", __file__, argv, args.figures_dir,
                         figures={"runs": figures, "ratio": ratios, "seeds": args.seeds, "epochs": args.epochs,
                                  "batch_size": args.batch_size, "lr": args.lr,
                                  "max_train_samples": args.max_train_samples,
                                  "max_eval_samples": args.max_eval_samples},
                         precision={"bertfit": "fp32", "sentence-transformers": "fp32"}, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": figures, "ratio": ratios, "arguments": vars(args)},
                                              indent=2) + "\n")
    print("ratio " + " ".join(f"{task} {ratio:.3f}" for task, ratio in ratios.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
