import pytest
import torch

import tiny

from bertfit.model import BertConfig, BertForSequenceClassification
from bertfit.pretrained import embedded_model_path, load_tokenizer, save_pretrained

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer) -> str:
    """A tiny random BERT with a 2-label head, saved as a Hugging Face folder with the embedded tokenizer."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.get_vocab_size(), **tiny.REAL_VOCAB_SIZES))
    return str(save_pretrained(model, tokenizer, tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread; more only spin against the other processes on the machine.
    A module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["avx2", "avx512_bf16"])
def auto_precision(request, monkeypatch) -> str:
    """`--precision auto` resolved as on each CPU kind (fp32 on AVX2, bf16 with AVX-512 BF16 or AMX), whatever this
    CPU is: the precision-dependent tests run under both resolutions on any machine. Returns what auto became."""
    from bertfit import devices

    monkeypatch.setenv(devices.CPU_KIND_VARIABLE, request.param)
    return devices.precision_name(devices.resolve_precision("auto", torch.device("cpu")))
