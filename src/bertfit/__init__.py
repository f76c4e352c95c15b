"""bertfit: fine-tune BERT-family encoders on GLUE and SQuAD."""
__version__ = "0.1.0"
__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification", "BertForQuestionAnswering",
           "BertForMaskedLM", "BertForPreTraining", "load_pretrained", "save_pretrained", "save_tutorial"]

# Where each public name lives. They load on first use, so `bertfit --help` need not import torch.
_LAZY = {"BertConfig": "model", "BertModel": "model", "BertForSequenceClassification": "model",
         "BertForQuestionAnswering": "model", "BertForMaskedLM": "model", "BertForPreTraining": "model",
         "load_pretrained": "pretrained", "save_pretrained": "pretrained", "save_tutorial": "pretrained"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bertfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
