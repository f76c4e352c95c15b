"""`bertfit demo`: a short, offline fine-tune of the embedded model on sentiment data written here.

It runs the same pipeline as `bertfit glue sst2` (official file layout, caching, training loop,
metrics, saved model), on a few hundred movie-review sentences generated from templates, and says so:
its near-perfect accuracy shows the pipeline works, not how well a model reads real reviews.
"""
from __future__ import annotations

import random
from pathlib import Path

from . import inference, runs
from .recipes.glue import GlueOptions, finetune_glue
from .settings import TrainSettings

POSITIVE = ["wonderful", "moving", "delightful", "brilliant", "charming", "funny", "gripping", "beautiful",
            "clever", "touching", "superb", "memorable", "warm", "inventive", "thrilling"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "awful", "lifeless", "predictable", "shallow",
            "pointless", "messy", "bland", "forgettable", "tiresome", "confused", "painful"]
SUBJECTS = ["the film", "this movie", "the story", "the acting", "the script", "the ending", "the direction",
            "the soundtrack", "the cast", "the plot"]
TEMPLATES = ["{s} is {a} .", "{s} was {a} and {b} .", "i found {s} {a} .", "an {a} , {b} picture .",
             "{s} feels {a} from start to finish .", "what a {a} experience ; {s} is {b} ."]


def write_sentiment_data(folder: Path, train_size: int = 600, dev_size: int = 200, seed: int = 0) -> Path:
    """Write SST-2-layout train.tsv and dev.tsv (header `sentence\\tlabel`) and return the GLUE root."""
    rng = random.Random(seed)
    task_dir = Path(folder) / "SST-2"
    task_dir.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", train_size), ("dev", dev_size)):
        rows = []
        for _ in range(size):
            label = rng.randrange(2)
            words = POSITIVE if label else NEGATIVE
            a, b = rng.sample(words, 2)
            text = rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS), a=a, b=b)
            rows.append(f"{text}\t{label}\n")
        (task_dir / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(rows), encoding="utf-8")
    return Path(folder)


def run_demo(output_dir: str | Path = "runs/demo", quiet: bool = False, train_size: int = 600,
             dev_size: int = 200) -> dict:
    """Fine-tune on generated sentences and classify two more: a check that the pipeline works, not a benchmark."""
    # the data is written into the run dir, so the folder is claimed first: one of other files is refused
    output_dir = runs.claim_run_dir(output_dir)
    say = (lambda *a: None) if quiet else print
    data_dir = write_sentiment_data(output_dir / "data", train_size, dev_size)
    say(f"demo: fine-tuning the embedded model on {train_size} generated movie-review sentences "
        f"({len(TEMPLATES)} templates filled with {len(POSITIVE)} positive or {len(NEGATIVE)} negative words, "
        f"written to {data_dir / 'SST-2'}), scored on {dev_size} more of the same kind; real reviews are harder "
        f"(bertfit glue sst2)")
    options = GlueOptions(task="sst2", data_dir=str(data_dir), output_dir=str(output_dir), overwrite=True, quiet=quiet)
    settings = TrainSettings(epochs=2, lr=5e-5, batch_size=16)
    results = finetune_glue(options, settings)
    accuracy = results["metrics"]["accuracy"]
    say(f"accuracy {accuracy:.4f} on the {dev_size} generated dev sentences: the pipeline works. The same "
        f"templates make them easy; this says nothing of SST-2's real reviews")
    if not quiet:
        texts = ["a charming and clever film .", "the plot was tedious and bland ."]
        for text, result in zip(texts, inference.classify(inference.load_run(output_dir, need="classify"), texts)):
            print(f"classify {text!r}: {result['label']} ({result['probability']:.2f})")
        print(f"results: {output_dir / 'results.json'}; model: {output_dir / 'model'}")
    return results
