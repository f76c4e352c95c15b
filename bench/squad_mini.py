"""Write the squad-mini split: train on the first articles of a SQuAD dev file, evaluate on the last 10.

    python bench/squad_mini.py ../shared/data/squad/dev-v1.1.json 38 squad1   # squad1-train.json, squad1-eval.json
    python bench/squad_mini.py ../shared/data/squad/dev-v2.0.json 25 squad2
"""
import json
import sys

source, train_articles, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(source, encoding="utf-8") as f:
    dataset = json.load(f)
for name, articles in (("train", dataset["data"][:train_articles]), ("eval", dataset["data"][-10:])):
    with open(f"{prefix}-{name}.json", "w", encoding="utf-8") as f:
        json.dump({"version": dataset.get("version", ""), "data": articles}, f)
    print(f"{prefix}-{name}.json: {len(articles)} articles, {sum(len(p['qas']) for a in articles for p in a['paragraphs'])} questions")
