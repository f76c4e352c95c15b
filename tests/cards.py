"""What every model card bertfit writes must hold (a plain helper, not tests): it loads with huggingface_hub, its
metadata validate and round-trip without the network, its scores are results.json's, and transformers still loads
the folder it sits in."""
from __future__ import annotations

import json
from pathlib import Path

import transformers
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results


def check_model_card(run_dir: Path, auto_class=transformers.AutoModel) -> dict:
    """Assert all that of RUN_DIR/model/README.md; returns the card's metadata."""
    results = json.loads((Path(run_dir) / "results.json").read_text())
    card = ModelCard.load(Path(run_dir) / "model" / "README.md")
    metadata = card.data.to_dict()
    name, evals = model_index_to_eval_results(metadata["model-index"])
    assert name == Path(run_dir).name
    scores = {e.metric_name: e.metric_value for e in evals}
    numeric = {k: v for k, v in results["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert scores == numeric and scores
    assert ModelCardData(**metadata).to_dict() == metadata  # a round trip through the hub's own class
    assert metadata["bertfit"]["settings"] == results["settings"]  # every training setting
    assert metadata["bertfit"]["model_chosen_by"] == results["model_chosen_by"]
    assert metadata["tags"][0] == "bertfit" and metadata["library_name"] == "transformers"
    auto_class.from_pretrained(Path(run_dir) / "model")
    transformers.AutoTokenizer.from_pretrained(Path(run_dir) / "model")
    return metadata
