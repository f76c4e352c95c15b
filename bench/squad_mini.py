"""Write the squad-mini split of a SQuAD dev file: training articles, a validation part, evaluation articles.

    python bench/squad_mini.py ../shared/data/squad/dev-v1.1.json 38 squad1   # squad1-{train,validation,eval}.json
    python bench/squad_mini.py ../shared/data/squad/dev-v2.0.json 25 squad2

In file order: the first TRAIN_ARTICLES articles are the training side, of which the last
--validation-articles (3) are the validation part (for choosing defaults, the best epoch and the
v2.0 null threshold: `bertfit squad --validation-file PREFIX-validation.json`); the last 10
articles of the file are for evaluation, used only for reporting. Training and validation must come
before the evaluation articles.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

EVAL_ARTICLES = 10


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="an official SQuAD JSON file (a dev set)")
    parser.add_argument("train_articles", type=int, help="articles on the training side, validation included")
    parser.add_argument("prefix", help="writes PREFIX-train.json, PREFIX-validation.json, PREFIX-eval.json")
    parser.add_argument("--validation-articles", type=int, default=3,
                        help="the last articles of the training side, held out to choose on (default 3)")
    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    with open(args.source, encoding="utf-8") as f:
        dataset = json.load(f)
    articles = dataset["data"]
    if not 0 < args.validation_articles < args.train_articles <= len(articles) - EVAL_ARTICLES:
        parser.error(f"{args.source} has {len(articles)} articles: the training side ({args.train_articles}) must "
                     f"hold more than the --validation-articles ({args.validation_articles}) and come before the "
                     f"last {EVAL_ARTICLES}, which are for evaluation")
    train_end = args.train_articles - args.validation_articles
    parts = (("train", articles[:train_end]), ("validation", articles[train_end : args.train_articles]),
             ("eval", articles[-EVAL_ARTICLES:]))
    counts = {}
    for name, part in parts:
        path = f"{args.prefix}-{name}.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"version": dataset.get("version", ""), "data": part}, f)
        questions = sum(len(p["qas"]) for a in part for p in a["paragraphs"])
        counts[name] = {"file": path, "articles": len(part), "questions": questions}
        print(f"{path}: {len(part)} articles, {questions} questions")
    common.write_figures(f"squad-mini-{Path(args.prefix).name}", __file__, argv, args.figures_dir,
                         figures={"source_articles": len(articles), "parts": counts},
                         settings={"train_articles": args.train_articles,
                                   "validation_articles": args.validation_articles, "eval_articles": EVAL_ARTICLES})


if __name__ == "__main__":
    main(sys.argv[1:])
