import pytest
import torch

from bertfit.checkpoints import embedded_model_path, load_tokenizer

SENTENCES = [
    ("The cat sat on the mat.", None),
    ("A much longer sentence about the weather in Paris today, which was grey and wet.", "Was it sunny?"),
    ("hi", None),
    ("Stocks fell sharply on Monday after the announcement.", "Markets dropped at the start of the week."),
]


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(embedded_model_path())


@pytest.fixture(scope="session")
def real_batch(tokenizer):
    """A padded batch of real sentences and sentence pairs, encoded [CLS] a [SEP] (b [SEP])."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    rows = []
    for a, b in SENTENCES:
        ids = [cls] + tokenizer.encode(a, add_special_tokens=False).ids + [sep]
        types = [0] * len(ids)
        if b:
            more = tokenizer.encode(b, add_special_tokens=False).ids + [sep]
            ids, types = ids + more, types + [1] * len(more)
        rows.append((ids, types))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in rows])
    token_type_ids = torch.tensor([types + [0] * (width - len(types)) for _, types in rows])
    return input_ids, token_type_ids, input_ids != 0
