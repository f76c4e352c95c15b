import collections
import dataclasses
import json
import pathlib

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import Tensor, nn

from bertfit.errors import CheckpointError
from bertfit.model import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification
from bertfit.pretrained import load_pretrained, load_tokenizer, save_pretrained, save_tutorial

transformers = pytest.importorskip("transformers")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CORPUS = [
    "The cat sat on the mat.",
    "A much longer sentence about the weather in Paris today, which was grey and wet.",
    "Was it sunny?",
    "Stocks fell sharply on Monday after the announcement.",
    "Markets dropped at the start of the week.",
    "The dog chased the cat across the garden and into the street.",
]
PAIRS = [
    ("The cat sat on the mat.", None),
    ("The weather in Paris was grey and wet.", "Was it sunny?"),
    ("hi", None),
    ("Stocks fell sharply on Monday.", "Markets dropped at the start of the week."),
]


# ---- the tutorial's model, as the tutorial wrote it ------------------------------------------

@dataclasses.dataclass
class TutorialConfig:
    vocab_size: int = 30522
    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    dropout_prob: float = 0.1
    pad_id: int = 0
    max_seq_len: int = 512
    num_types: int = 2


class TutorialBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout_prob: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_prob, batch_first=True)
        self.attn_norm = nn.LayerNorm(hidden_size)
        self.ff_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout_prob)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Linear(4 * hidden_size, hidden_size),
        )

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        attn_output, _ = self.attention(x, x, x, key_padding_mask=pad_mask)
        x = self.attn_norm(x + attn_output)
        ff_output = self.feed_forward(x)
        x = self.ff_norm(x + self.dropout(ff_output))
        return x


class TutorialPooler(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.dense(x))


class TutorialBertModel(nn.Module):
    def __init__(self, config: TutorialConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_id)
        self.type_embeddings = nn.Embedding(config.num_types, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_seq_len, config.hidden_size)
        self.embeddings_norm = nn.LayerNorm(config.hidden_size)
        self.embeddings_dropout = nn.Dropout(config.dropout_prob)
        self.blocks = nn.ModuleList([
            TutorialBlock(config.hidden_size, config.num_heads, config.dropout_prob)
            for _ in range(config.num_layers)
        ])
        self.pooler = TutorialPooler(config.hidden_size)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, pad_id: int = 0) -> tuple[Tensor, Tensor]:
        pad_mask = input_ids == pad_id
        batch_size, seq_len = input_ids.shape
        position_ids = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        x = self.embeddings_dropout(self.embeddings_norm(x))
        for block in self.blocks:
            x = block(x, pad_mask)
        pooled_output = self.pooler(x[:, 0, :])
        return x, pooled_output


class TutorialForSequenceClassification(nn.Module):
    def __init__(self, config: TutorialConfig, num_labels: int):
        super().__init__()
        self.bert = TutorialBertModel(config)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids: Tensor, pad_id: int = 0) -> Tensor:
        token_type_ids = torch.zeros_like(input_ids)
        seq_output, pooled_output = self.bert(input_ids, token_type_ids, pad_id=pad_id)
        return self.classifier(pooled_output)


class TutorialForQuestionAnswering(nn.Module):
    def __init__(self, config: TutorialConfig):
        super().__init__()
        self.bert = TutorialBertModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, pad_id: int = 0) -> tuple[Tensor, Tensor]:
        seq_output, pooled_output = self.bert(input_ids, token_type_ids, pad_id=pad_id)
        logits = self.qa_outputs(seq_output)
        return logits[:, :, 0], logits[:, :, 1]


# ---- small real inputs ---------------------------------------------------------------------

def _train_wordpiece(lowercase: bool = True) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=SPECIAL_TOKENS))
    return tokenizer


@pytest.fixture(scope="module")
def small_tokenizer_file(tmp_path_factory) -> pathlib.Path:
    """A WordPiece tokenizer like the tutorial's, saved under the tutorial's file name."""
    path = tmp_path_factory.mktemp("tokenizer") / "wikitext-2_wordpiece.json"
    _train_wordpiece().save(str(path))
    return path


@pytest.fixture(scope="module")
def small_tokenizer(small_tokenizer_file) -> Tokenizer:
    return Tokenizer.from_file(str(small_tokenizer_file))


def _encode_batch(tokenizer: Tokenizer, pairs=PAIRS) -> tuple[Tensor, Tensor, Tensor]:
    """[CLS] a [SEP] (b [SEP]), padded with [PAD]: (input_ids, token_type_ids, mask of real tokens)."""
    cls, sep, pad = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    rows = []
    for a, b in pairs:
        ids = [cls] + tokenizer.encode(a, add_special_tokens=False).ids + [sep]
        types = [0] * len(ids)
        if b:
            more = tokenizer.encode(b, add_special_tokens=False).ids + [sep]
            ids, types = ids + more, types + [1] * len(more)
        rows.append((ids, types))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    token_type_ids = torch.tensor([types + [0] * (width - len(types)) for _, types in rows])
    mask = input_ids != pad
    assert mask.sum() < mask.numel(), "the batch must contain padding"
    return input_ids, token_type_ids, mask


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, LayerNorm scales and shifts included, so a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = 0.2 * torch.randn(param.shape, generator=generator)
            is_norm_scale = name.endswith(("norm.weight", "LayerNorm.weight"))
            param.copy_(1 + noise if is_norm_scale else noise)
    return model.eval()


def _tutorial_config(tokenizer: Tokenizer, hidden: int = 64, layers: int = 2, heads: int = 4) -> TutorialConfig:
    return TutorialConfig(vocab_size=tokenizer.get_vocab_size(), num_layers=layers, hidden_size=hidden,
                          num_heads=heads, max_seq_len=64)


def _save_tutorial(model: nn.Module, folder: pathlib.Path, tokenizer_file: pathlib.Path | None) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "bert_model.pth")
    if tokenizer_file is not None:
        (folder / "wikitext-2_wordpiece.json").write_bytes(tokenizer_file.read_bytes())
    return folder / "bert_model.pth"


def _max_diff(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    diff = (a - b).abs()
    return float((diff[mask] if mask is not None else diff).max())


# ---- the tutorial's bert_model.pth ---------------------------------------------------------

def test_tutorial_pth_gives_the_tutorial_models_outputs_on_a_padded_batch(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer, heads=4)))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)
    input_ids, token_type_ids, mask = _encode_batch(small_tokenizer)

    model, tokenizer = load_pretrained(pth, num_heads=4)
    model.eval()
    with torch.no_grad():
        expected_sequence, expected_pooled = tutorial(input_ids, token_type_ids)
        sequence, pooled = model(input_ids, token_type_ids)  # pads found from the tokenizer's [PAD]

    assert model.config.num_attention_heads == 4 and model.config.layer_norm_eps == 1e-5
    assert _max_diff(sequence, expected_sequence, mask) <= 1e-5
    assert _max_diff(pooled, expected_pooled) <= 1e-5


def test_tutorial_head_count_defaults_to_hidden_size_over_64(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer, hidden=128, layers=1, heads=2)))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)
    input_ids, token_type_ids, mask = _encode_batch(small_tokenizer)

    model, _ = load_pretrained(pth)
    model.eval()
    with torch.no_grad():
        expected, _ = tutorial(input_ids, token_type_ids)
        sequence, _ = model(input_ids, token_type_ids)

    assert model.config.num_attention_heads == 2
    assert _max_diff(sequence, expected, mask) <= 1e-5


def test_tokenizer_beside_the_tutorial_pth_is_found(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer, layers=1)))
    _, tokenizer = load_pretrained(_save_tutorial(tutorial, tmp_path, small_tokenizer_file), num_heads=4)
    assert tokenizer.get_vocab() == small_tokenizer.get_vocab()


def test_explicit_tokenizer_path_is_used_for_a_pth_without_one_beside_it(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer, layers=1)))
    pth = _save_tutorial(tutorial, tmp_path / "checkpoint", tokenizer_file=None)
    elsewhere = tmp_path / "tokenizers" / "my_vocab.json"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(small_tokenizer_file.read_bytes())

    model, tokenizer = load_pretrained(pth, num_heads=4, tokenizer_path=elsewhere)
    assert tokenizer.get_vocab() == small_tokenizer.get_vocab()
    assert model.config.vocab_size == small_tokenizer.get_vocab_size()


def test_tutorial_glue_state_dict_loads_with_its_classifier(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialForSequenceClassification(_tutorial_config(small_tokenizer), num_labels=3))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)
    input_ids, _, _ = _encode_batch(small_tokenizer, [(a, None) for a, _ in PAIRS])

    model, _ = load_pretrained(pth, head="classification", num_labels=3, num_heads=4)
    model.eval()
    with torch.no_grad():
        expected = tutorial(input_ids)
        logits = model(input_ids)

    assert logits.shape == (len(PAIRS), 3)
    assert _max_diff(logits, expected) <= 1e-5


def test_tutorial_glue_classifier_of_another_label_count_is_replaced_by_a_fresh_head(
        tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialForSequenceClassification(_tutorial_config(small_tokenizer, layers=1), num_labels=2))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)

    model, _ = load_pretrained(pth, head="classification", num_labels=3, num_heads=4)

    assert model.classifier.weight.shape == (3, 64)
    assert torch.equal(model.classifier.bias, torch.zeros(3))
    assert torch.equal(model.bert.pooler.dense.weight, tutorial.bert.pooler.dense.weight)


def test_tutorial_squad_state_dict_loads_with_its_span_head(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialForQuestionAnswering(_tutorial_config(small_tokenizer)))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)
    input_ids, token_type_ids, mask = _encode_batch(small_tokenizer)

    model, _ = load_pretrained(pth, head="qa", num_heads=4)
    model.eval()
    with torch.no_grad():
        expected_start, expected_end = tutorial(input_ids, token_type_ids)
        start, end = model(input_ids, token_type_ids)

    assert _max_diff(start, expected_start, mask) <= 1e-5
    assert _max_diff(end, expected_end, mask) <= 1e-5


# ---- fine-tune, save as a Hugging Face folder, load back -----------------------------------

LABELS = ["entailment", "neutral", "contradiction"]


def _fine_tune(model: nn.Module, loss_of, steps: int = 3) -> nn.Module:
    """A few plain AdamW steps so every saved weight differs from the checkpoint's."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(model).backward()
        optimizer.step()
    model.eval()
    assert not torch.equal(before["bert.layers.0.attention.qkv.weight"], model.state_dict()["bert.layers.0.attention.qkv.weight"])
    return model


@pytest.fixture(scope="module")
def fine_tuned_classifier(tmp_path_factory, real_batch):
    input_ids, token_type_ids, mask = real_batch
    model, tokenizer = load_pretrained(head="classification", num_labels=3)
    labels = torch.tensor([0, 1, 2, 1])
    _fine_tune(model, lambda m: F.cross_entropy(m(input_ids, token_type_ids, mask), labels))
    folder = save_pretrained(model, tokenizer, tmp_path_factory.mktemp("glue") / "model", labels=LABELS)
    with torch.no_grad():
        logits = model(input_ids, token_type_ids, mask)
    return folder, logits


@pytest.fixture(scope="module")
def fine_tuned_span_model(tmp_path_factory, real_batch):
    input_ids, token_type_ids, mask = real_batch
    model, tokenizer = load_pretrained(head="qa")
    starts, ends = torch.tensor([1, 2, 1, 3]), torch.tensor([2, 4, 1, 5])

    def span_loss(m):
        start, end = m(input_ids, token_type_ids, mask)
        return F.cross_entropy(start, starts) + F.cross_entropy(end, ends)

    _fine_tune(model, span_loss)
    folder = save_pretrained(model, tokenizer, tmp_path_factory.mktemp("squad") / "model")
    with torch.no_grad():
        start, end = model(input_ids, token_type_ids, mask)
    return folder, start, end


def test_saved_classifier_loads_back_in_bertfit_with_the_same_logits(fine_tuned_classifier, real_batch):
    folder, expected = fine_tuned_classifier
    input_ids, token_type_ids, mask = real_batch
    model, _ = load_pretrained(folder, head="classification", num_labels=3)
    model.eval()
    with torch.no_grad():
        assert _max_diff(model(input_ids, token_type_ids, mask), expected) <= 1e-5


def test_saved_classifier_loads_in_transformers_with_its_labels(fine_tuned_classifier, real_batch):
    folder, expected = fine_tuned_classifier
    input_ids, token_type_ids, mask = real_batch
    theirs, info = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), output_loading_info=True)
    theirs.eval()
    with torch.no_grad():
        logits = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long()).logits

    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert _max_diff(logits, expected) <= 1e-5
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["problem_type"] == "single_label_classification"
    assert theirs.config.id2label == dict(enumerate(LABELS))
    assert theirs.config.label2id == {name: i for i, name in enumerate(LABELS)}


def test_saved_span_model_loads_back_in_bertfit_and_transformers_with_the_same_logits(fine_tuned_span_model, real_batch):
    folder, expected_start, expected_end = fine_tuned_span_model
    input_ids, token_type_ids, mask = real_batch
    ours, _ = load_pretrained(folder, head="qa")
    theirs, info = transformers.AutoModelForQuestionAnswering.from_pretrained(str(folder), output_loading_info=True)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        start, end = ours(input_ids, token_type_ids, mask)
        reference = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())

    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
    assert _max_diff(start, expected_start, mask) <= 1e-5 and _max_diff(end, expected_end, mask) <= 1e-5
    assert _max_diff(reference.start_logits, expected_start, mask) <= 1e-5
    assert _max_diff(reference.end_logits, expected_end, mask) <= 1e-5


def test_saved_tokenizer_encodes_a_pair_in_transformers_as_bertfit_does(fine_tuned_classifier, tokenizer):
    folder, _ = fine_tuned_classifier
    first, second = "The cat sat on the mat.", "Was it sunny in Paris?"
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    a, b = (tokenizer.encode(text, add_special_tokens=False).ids for text in (first, second))

    encoded = transformers.AutoTokenizer.from_pretrained(str(folder))(first, second)

    assert encoded["input_ids"] == [cls, *a, sep, *b, sep]
    assert encoded["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)


def test_regression_head_saved_from_a_new_tokenizer_loads_in_transformers(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)  # no post-processor: saving must write the pair layout
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = _randomise(BertForSequenceClassification(config, num_labels=1))
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    with torch.no_grad():
        expected = model(input_ids, token_type_ids, mask)

    folder = save_pretrained(model, tokenizer, tmp_path / "stsb")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        logits = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long()).logits
    first, second = PAIRS[1]
    encoded = transformers.AutoTokenizer.from_pretrained(str(folder))(first, second)

    assert json.loads((folder / "config.json").read_text())["problem_type"] == "regression"
    assert theirs.config.problem_type == "regression" and theirs.config.num_labels == 1
    assert logits.shape == (len(PAIRS), 1) and _max_diff(logits, expected) <= 1e-5
    assert encoded["input_ids"] == input_ids[1][mask[1]].tolist()
    assert encoded["token_type_ids"] == token_type_ids[1][mask[1]].tolist()


# ---- Hugging Face folder variants ----------------------------------------------------------

def _tiny_hf_folder(folder: pathlib.Path, tokenizer_file: pathlib.Path, vocab_size: int, **overrides):
    """A transformers BertModel with random weights written as a Hugging Face folder: (folder, model, weights)."""
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, **overrides)
    reference = _randomise(transformers.BertModel(config))
    weights = {k: v.contiguous() for k, v in reference.state_dict().items() if k != "embeddings.position_ids"}
    folder.mkdir(parents=True)
    config.to_json_file(str(folder / "config.json"))
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    return folder, reference, weights


@pytest.fixture
def hf_folder(tmp_path, small_tokenizer_file, small_tokenizer):
    return _tiny_hf_folder(tmp_path / "hf", small_tokenizer_file, small_tokenizer.get_vocab_size())


def _assert_matches_reference(folder: pathlib.Path, reference: nn.Module, tokenizer: Tokenizer) -> None:
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    model, _ = load_pretrained(folder)
    model.eval()
    with torch.no_grad():
        sequence, pooled = model(input_ids, token_type_ids, mask)
        expected = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())
    assert _max_diff(sequence, expected.last_hidden_state, mask) <= 1e-5
    assert _max_diff(pooled, expected.pooler_output) <= 1e-5


def test_transformers_written_folder_matches_transformers(hf_folder, small_tokenizer):
    folder, reference, _ = hf_folder
    _assert_matches_reference(folder, reference, small_tokenizer)


def test_folder_with_pytorch_model_bin_instead_of_safetensors_loads(hf_folder, small_tokenizer):
    folder, reference, weights = hf_folder
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    _assert_matches_reference(folder, reference, small_tokenizer)


def test_old_layer_norm_gamma_and_beta_names_load(hf_folder, small_tokenizer):
    folder, reference, weights = hf_folder
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in weights.items()}
    assert sum("gamma" in k for k in renamed) == 1 + 2 * 2
    save_file(renamed, str(folder / "model.safetensors"))
    _assert_matches_reference(folder, reference, small_tokenizer)


def test_span_model_folder_written_by_transformers_has_no_pooler_and_loads(tmp_path, small_tokenizer_file, small_tokenizer):
    config = transformers.BertConfig(vocab_size=small_tokenizer.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=128, max_position_embeddings=64)
    reference = _randomise(transformers.BertForQuestionAnswering(config))
    reference.save_pretrained(str(tmp_path / "squad"))
    (tmp_path / "squad" / "tokenizer.json").write_bytes(small_tokenizer_file.read_bytes())
    assert not any("pooler" in k for k in load_file(str(tmp_path / "squad" / "model.safetensors")))
    input_ids, token_type_ids, mask = _encode_batch(small_tokenizer)

    model, _ = load_pretrained(tmp_path / "squad", head="qa")
    model.eval()
    with torch.no_grad():
        start, end = model(input_ids, token_type_ids, mask)
        expected = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())

    assert _max_diff(start, expected.start_logits, mask) <= 1e-5
    assert _max_diff(end, expected.end_logits, mask) <= 1e-5


VOCAB = SPECIAL_TOKENS + ["hello", "Hello", "world", "World", "cafe", "café", "Café", "!", ",", "wo", "##rld", "the", "The"]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_vocab_txt_folder_honours_lowercase_like_transformers_bert_tokenizer(tmp_path, do_lower_case):
    (tmp_path / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": do_lower_case}))
    text = "Hello World, the Café! hello world"

    tokenizer = load_tokenizer(tmp_path)
    theirs = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=do_lower_case)
    ids = tokenizer.encode(text, add_special_tokens=False).ids

    assert ids == theirs(text, add_special_tokens=False)["input_ids"]
    assert (VOCAB.index("Hello") in ids) == (not do_lower_case)


# ---- pretraining heads: masked LM and next-sentence prediction ---------------------------

def _masked_batch(tokenizer: Tokenizer) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """_encode_batch with every third token that is not [CLS], [SEP] or [PAD] replaced by [MASK]:
    (input_ids, token_type_ids, mask of real tokens, mask of [MASK] positions)."""
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    specials = torch.tensor([tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")])
    positions = ~torch.isin(input_ids, specials) & (torch.arange(input_ids.shape[1]) % 3 == 1)
    assert positions.sum() >= len(PAIRS)
    return input_ids.masked_fill(positions, tokenizer.token_to_id("[MASK]")), token_type_ids, mask, positions


def _lm_config(tokenizer: Tokenizer, **overrides) -> BertConfig:
    return BertConfig(**{**dict(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                pad_token_id=tokenizer.token_to_id("[PAD]")), **overrides})


def test_saved_masked_lm_loads_in_transformers_and_back_in_bertfit_with_the_same_logits(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    model = _randomise(BertForMaskedLM(_lm_config(tokenizer)))
    input_ids, token_type_ids, mask, _ = _masked_batch(tokenizer)
    with torch.no_grad():
        expected = model(input_ids, token_type_ids, mask)

    folder = save_pretrained(model, tokenizer, tmp_path / "mlm")
    theirs, info = transformers.AutoModelForMaskedLM.from_pretrained(str(folder), output_loading_info=True)
    ours, _ = load_pretrained(folder, head="mlm")
    ours.eval(), theirs.eval()
    with torch.no_grad():
        reference = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long()).logits
        back = ours(input_ids, token_type_ids, mask)

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["tie_word_embeddings"] is True
    assert type(theirs).__name__ == "BertForMaskedLM" and not info["missing_keys"] and not info["unexpected_keys"]
    assert "cls.predictions.decoder.weight" not in load_file(str(folder / "model.safetensors"))  # tied
    assert _max_diff(reference, expected, mask) <= 1e-5
    assert torch.equal(back, expected)


def test_saved_pretraining_model_gives_transformers_mlm_and_nsp_logits(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    model = _randomise(BertForPreTraining(_lm_config(tokenizer)))
    input_ids, token_type_ids, mask, positions = _masked_batch(tokenizer)
    with torch.no_grad():
        mlm, nsp = model(input_ids, token_type_ids, mask)
        at_masks, _ = model(input_ids, token_type_ids, mask, positions=positions)

    folder = save_pretrained(model, tokenizer, tmp_path / "pretraining")
    theirs, info = transformers.BertForPreTraining.from_pretrained(str(folder), output_loading_info=True)
    ours, _ = load_pretrained(folder, head="pretraining")
    ours.eval(), theirs.eval()
    with torch.no_grad():
        reference = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())
        back_mlm, back_nsp = ours(input_ids, token_type_ids, mask)

    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert _max_diff(reference.prediction_logits, mlm, mask) <= 1e-5
    assert _max_diff(reference.prediction_logits[positions], at_masks) <= 1e-5
    assert _max_diff(reference.seq_relationship_logits, nsp) <= 1e-5
    assert torch.equal(back_mlm, mlm) and torch.equal(back_nsp, nsp)


@pytest.mark.parametrize("head, their_class", [("mlm", "BertForMaskedLM"), ("pretraining", "BertForPreTraining")])
@pytest.mark.parametrize("written_as", ["save_pretrained", "an older file with the tied decoder's copies"])
def test_transformers_pretraining_folders_load_with_their_heads(tmp_path, small_tokenizer_file, small_tokenizer,
                                                                 head, their_class, written_as):
    config = transformers.BertConfig(vocab_size=small_tokenizer.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=128, max_position_embeddings=64)
    reference = _randomise(getattr(transformers, their_class)(config))
    folder = tmp_path / "hf"
    if written_as == "save_pretrained":
        reference.save_pretrained(str(folder))
    else:  # as bert-base-uncased's pytorch_model.bin: cls.predictions.decoder.weight and .bias included
        folder.mkdir()
        config.to_json_file(str(folder / "config.json"))
        weights = {k: v.clone() for k, v in reference.state_dict().items()}
        assert {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"} <= set(weights)
        torch.save(weights, folder / "pytorch_model.bin")
    (folder / "tokenizer.json").write_bytes(small_tokenizer_file.read_bytes())
    input_ids, token_type_ids, mask, _ = _masked_batch(small_tokenizer)

    model, _ = load_pretrained(folder, head=head)
    model.eval()
    with torch.no_grad():
        ours = model(input_ids, token_type_ids, mask)
        expected = reference(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())

    if head == "mlm":
        assert _max_diff(ours, expected.logits, mask) <= 1e-5
    else:
        assert _max_diff(ours[0], expected.prediction_logits, mask) <= 1e-5
        assert _max_diff(ours[1], expected.seq_relationship_logits) <= 1e-5


def test_lm_bias_held_only_under_the_decoders_name_loads(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    model = _randomise(BertForMaskedLM(_lm_config(tokenizer)))
    folder = save_pretrained(model, tokenizer, tmp_path / "mlm")
    weights = load_file(str(folder / "model.safetensors"))
    weights["cls.predictions.decoder.bias"] = weights.pop("cls.predictions.bias")
    save_file(weights, str(folder / "model.safetensors"))

    loaded, _ = load_pretrained(folder, head="mlm")
    assert torch.equal(loaded.cls.bias, model.cls.bias)


def test_lm_head_missing_a_tensor_is_refused_not_replaced(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    folder = save_pretrained(_randomise(BertForMaskedLM(_lm_config(tokenizer))), tokenizer, tmp_path / "mlm")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["cls.predictions.transform.LayerNorm.bias"]
    save_file(weights, str(folder / "model.safetensors"))
    assert str(folder) in _raises(r"missing tensors cls\.norm\.bias", folder, head="mlm")


def _assert_fresh_lm_head(head) -> None:
    assert torch.equal(head.bias, torch.zeros_like(head.bias)) and torch.equal(head.dense.bias, torch.zeros_like(head.dense.bias))
    assert torch.equal(head.norm.weight, torch.ones_like(head.norm.weight))
    assert 0.015 < float(head.dense.weight.detach().std()) < 0.025  # BERT's initializer_range


def test_embedded_model_has_no_lm_head_and_loads_with_a_fresh_one(real_batch):
    base, _ = load_pretrained()
    mlm, _ = load_pretrained(head="mlm")
    pretraining, _ = load_pretrained(head="pretraining")
    for model in (base, mlm, pretraining):
        model.eval()

    _assert_fresh_lm_head(mlm.cls)
    _assert_fresh_lm_head(pretraining.cls)
    assert torch.equal(pretraining.seq_relationship.bias, torch.zeros(2))
    assert torch.equal(pretraining.bert.pooler.dense.weight, base.pooler.dense.weight)
    with torch.no_grad():
        sequence, _ = base(*real_batch)
        assert torch.equal(mlm.bert(*real_batch)[0], sequence)
        assert mlm(*real_batch).shape == (*real_batch[0].shape, 30522)


def test_loading_leaves_the_callers_random_stream_as_it_was_and_fresh_parts_follow_its_seed(
        tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer, layers=1)))
    pth = _save_tutorial(tutorial, tmp_path / "tutorial", small_tokenizer_file)
    folder = save_pretrained(_randomise(BertForMaskedLM(_lm_config(small_tokenizer))), small_tokenizer,
                             tmp_path / "mlm")
    loads = [(lambda: load_pretrained(folder, head="mlm"), set()),  # every tensor from the file
             (lambda: load_pretrained(folder, head="classification", num_labels=3),
              {"classifier.weight", "bert.pooler.dense.weight"}),  # no pooler in a masked-LM folder
             (lambda: load_pretrained(pth, head="pretraining", num_heads=4), {"cls.dense.weight", "seq_relationship.weight"}),
             (lambda: load_pretrained(head="qa"), {"qa_outputs.weight"})]  # the embedded model
    for load, fresh in loads:
        torch.manual_seed(3)
        state = torch.get_rng_state()
        first, _ = load()
        assert torch.equal(torch.get_rng_state(), state)
        second, _ = load()
        torch.manual_seed(4)
        other, _ = load()
        for name, tensor in first.state_dict().items():
            assert not tensor.is_meta and torch.equal(second.state_dict()[name], tensor), name
        assert {name for name, tensor in first.state_dict().items()
                if not torch.equal(other.state_dict()[name], tensor)} == fresh  # drawn from the caller's seed


def test_fine_tuning_heads_load_from_saved_mlm_and_pretraining_folders(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    for cls in (BertForMaskedLM, BertForPreTraining):
        pretrained = _randomise(BertForPreTraining(_lm_config(tokenizer)) if cls is BertForPreTraining
                                else BertForMaskedLM(_lm_config(tokenizer)))
        folder = save_pretrained(pretrained, tokenizer, tmp_path / cls.__name__)
        with torch.no_grad():
            expected, _ = pretrained.bert(input_ids, token_type_ids, mask)
        torch.manual_seed(0)
        classifier, _ = load_pretrained(folder, head="classification", num_labels=3)
        span, _ = load_pretrained(folder, head="qa")
        classifier.eval(), span.eval()
        with torch.no_grad():
            assert _max_diff(classifier.bert(input_ids, token_type_ids, mask)[0], expected, mask) == 0
            assert _max_diff(span.bert(input_ids, token_type_ids, mask)[0], expected, mask) == 0
        pooler = classifier.bert.pooler.dense
        if cls is BertForPreTraining:  # its pooler was trained with NSP: the classifier starts from it
            assert torch.equal(pooler.weight, pretrained.bert.pooler.dense.weight)
        else:  # no pooler in a masked-LM folder: a fresh one, as transformers makes
            assert torch.equal(pooler.bias, torch.zeros(32)) and 0.015 < float(pooler.weight.detach().std()) < 0.025
        assert torch.equal(classifier.classifier.bias, torch.zeros(3))


def test_tutorial_pth_loads_with_a_fresh_lm_head(tmp_path, small_tokenizer_file, small_tokenizer):
    tutorial = _randomise(TutorialBertModel(_tutorial_config(small_tokenizer)))
    pth = _save_tutorial(tutorial, tmp_path, small_tokenizer_file)
    input_ids, token_type_ids, mask = _encode_batch(small_tokenizer)

    model, _ = load_pretrained(pth, head="pretraining", num_heads=4)
    model.eval()
    with torch.no_grad():
        expected_sequence, expected_pooled = tutorial(input_ids, token_type_ids)
        sequence, pooled = model.bert(input_ids, token_type_ids)

    _assert_fresh_lm_head(model.cls)
    assert _max_diff(sequence, expected_sequence, mask) <= 1e-5 and _max_diff(pooled, expected_pooled) <= 1e-5


# ---- saving for the tutorial's scripts -----------------------------------------------------

def _tutorial_shaped(tokenizer: Tokenizer, cls=BertForPreTraining) -> nn.Module:
    """Our model in the tutorial's shape: feed-forward 4 x hidden, LayerNorm eps 1e-5."""
    return _randomise(cls(_lm_config(tokenizer, hidden_size=64, intermediate_size=256, layer_norm_eps=1e-5)))


def test_save_tutorial_writes_a_state_dict_the_tutorials_bert_model_loads_strictly(tmp_path, small_tokenizer_file):
    tokenizer = load_tokenizer(small_tokenizer_file)
    model = _tutorial_shaped(tokenizer)
    pth, tokenizer_path = save_tutorial(model, tokenizer, tmp_path / "out", name="wiki")

    state = torch.load(pth, weights_only=True)
    tutorial = TutorialBertModel(_tutorial_config(tokenizer, heads=4))
    tutorial.load_state_dict(state)  # strict: every name and shape is the tutorial's
    tutorial.eval()
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    with torch.no_grad():
        expected_sequence, expected_pooled = model.bert(input_ids, token_type_ids, mask)
        sequence, pooled = tutorial(input_ids, token_type_ids, pad_id=tokenizer.token_to_id("[PAD]"))

    assert (pth.name, tokenizer_path.name) == ("bert_model.pth", "wiki_wordpiece.json")
    assert sorted(p.name for p in pth.parent.iterdir()) == ["bert_model.pth", "wiki_wordpiece.json"]
    assert Tokenizer.from_file(str(tokenizer_path)).get_vocab() == tokenizer.get_vocab()
    assert _max_diff(sequence, expected_sequence, mask) <= 1e-5 and _max_diff(pooled, expected_pooled) <= 1e-5


@pytest.mark.usefixtures("one_thread")
def test_save_tutorial_of_a_masked_lm_loads_and_fine_tunes_on_glue(tmp_path, small_tokenizer_file, monkeypatch):
    from bertfit.recipes.glue import GlueOptions, finetune_glue
    from bertfit.settings import TrainSettings

    tokenizer = load_tokenizer(small_tokenizer_file)
    model = _tutorial_shaped(tokenizer, BertForMaskedLM)
    pth, _ = save_tutorial(model, tokenizer, tmp_path / "pretrained")
    assert not any(k.startswith("pooler.") for k in torch.load(pth, weights_only=True))  # it had none

    loaded, _ = load_pretrained(pth, head="classification", num_heads=4)  # 64 / 64 would be one head
    loaded.eval()
    input_ids, token_type_ids, mask = _encode_batch(tokenizer)
    with torch.no_grad():
        assert _max_diff(loaded.bert(input_ids, token_type_ids, mask)[0], model.bert(input_ids, token_type_ids, mask)[0],
                         mask) <= 1e-6

    sst2 = tmp_path / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    rows = [(f"the {word} sat on the mat .", i % 2) for i, word in enumerate(["cat", "dog"] * 8)]
    for split in ("train", "dev"):
        (sst2 / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))
    results = finetune_glue(
        GlueOptions(task="sst2", model=str(pth), num_heads=4, data_dir=str(tmp_path / "glue"),
                    output_dir=str(tmp_path / "run"), max_seq_length=32, quiet=True),
        TrainSettings(epochs=1, lr=1e-3, batch_size=8, eval_batch_size=64, precision="fp32", seed=0))

    assert results["train_examples"] == 16 and "accuracy" in results["metrics"]
    fine_tuned, _ = load_pretrained(tmp_path / "run" / "model", head="classification")
    assert fine_tuned.bert.config.num_attention_heads == 4


# ---- bad input: each message names the file and what is wrong ------------------------------

def _raises(match: str, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError, match=match) as excinfo:
        load_pretrained(*args, **kwargs)
    return str(excinfo.value)


def _write_config(folder: pathlib.Path, **fields) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "bert", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 128, **fields}
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "config.json"


def test_missing_path_is_refused_with_its_name(tmp_path):
    message = _raises("no such file or folder", tmp_path / "nowhere" / "bert_model.pth")
    assert str(tmp_path / "nowhere" / "bert_model.pth") in message


def test_folder_without_config_json_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert str(tmp_path) in _raises("no config.json", tmp_path)


def test_folder_without_weights_is_refused(tmp_path):
    _write_config(tmp_path)
    assert str(tmp_path) in _raises("no model.safetensors or pytorch_model.bin", tmp_path)


def test_config_json_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{'hidden_size': 64,")
    assert str(tmp_path / "config.json") in _raises("cannot read config", tmp_path)


@pytest.mark.parametrize("fields, problem", [
    ({"rotary_dim": 16}, "unknown fields rotary_dim"),
    ({"model_type": "gpt2"}, "model_type is 'gpt2'; bertfit builds bert, distilbert, roberta, xlm-roberta, camembert, "
                             "electra, deberta-v2, modernbert"),
    ({"num_attention_heads": 5}, "hidden_size 64 is not a multiple of num_attention_heads 5"),
])
def test_config_that_builds_another_network_is_refused(tmp_path, fields, problem):
    config_path = _write_config(tmp_path, **fields)
    assert str(config_path) in _raises(problem, tmp_path)


def test_tutorial_hidden_size_not_a_multiple_of_the_heads_asks_for_num_heads(tmp_path, small_tokenizer_file, small_tokenizer):
    pth = _save_tutorial(TutorialBertModel(_tutorial_config(small_tokenizer, layers=1)), tmp_path, small_tokenizer_file)
    assert str(pth) in _raises("hidden size 64 is not a multiple of 3 heads; pass --num-heads", pth, num_heads=3)


def test_state_dict_missing_a_tensor_is_refused(hf_folder):
    folder, _, weights = hf_folder
    del weights["encoder.layer.1.output.LayerNorm.bias"]
    save_file(weights, str(folder / "model.safetensors"))
    assert str(folder) in _raises(r"missing tensors layers\.1\.output_norm\.bias", folder)


def test_state_dict_missing_half_of_the_pooler_is_refused(hf_folder):
    folder, _, weights = hf_folder
    del weights["pooler.dense.bias"]
    save_file(weights, str(folder / "model.safetensors"))
    assert str(folder) in _raises(r"missing tensors pooler\.dense\.bias", folder)


def test_state_dict_missing_one_of_query_key_value_is_refused(hf_folder):
    folder, _, weights = hf_folder
    del weights["encoder.layer.0.attention.self.key.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    assert str(folder) in _raises("layer 0 lacks attention key weight", folder)


@pytest.mark.parametrize("name", ["encoder.layer.0.attention.self.rotary.weight", "embeddings.extra_embeddings.weight"])
def test_state_dict_with_an_unexpected_tensor_is_refused(hf_folder, name):
    folder, _, weights = hf_folder
    save_file({**weights, name: torch.zeros(4)}, str(folder / "model.safetensors"))
    assert str(folder) in _raises(f"unexpected tensors {name}", folder)


def test_state_dict_with_a_layer_the_config_does_not_have_is_refused(hf_folder):
    folder, _, weights = hf_folder
    extra = {k.replace("layer.1.", "layer.2."): v.clone() for k, v in weights.items() if "layer.1." in k}
    save_file({**weights, **extra}, str(folder / "model.safetensors"))
    assert str(folder) in _raises(r"unexpected tensors layers\.2\.", folder)


def test_state_dict_with_a_mis_shaped_tensor_is_refused(hf_folder):
    folder, _, weights = hf_folder
    weights["pooler.dense.weight"] = torch.zeros(64, 32)
    save_file(weights, str(folder / "model.safetensors"))
    assert str(folder) in _raises(r"mis-shaped tensors pooler\.dense\.weight \(64, 32\) != \(64, 64\)", folder)


def test_tokenizer_larger_than_the_embedding_matrix_is_refused(tmp_path, small_tokenizer_file, small_tokenizer):
    size = small_tokenizer.get_vocab_size()
    folder, _, _ = _tiny_hf_folder(tmp_path / "hf", small_tokenizer_file, vocab_size=size - 10)
    message = _raises(f"the tokenizer has {size} tokens but the model's embedding matrix has {size - 10} rows", folder)
    assert str(folder / "config.json") in message


def test_tutorial_pth_smaller_than_its_tokenizer_is_refused(tmp_path, small_tokenizer_file, small_tokenizer):
    config = dataclasses.replace(_tutorial_config(small_tokenizer, layers=1), vocab_size=30)
    pth = _save_tutorial(TutorialBertModel(config), tmp_path, small_tokenizer_file)
    assert str(pth) in _raises("embedding matrix has 30 rows", pth, num_heads=4)


class _WritesMarker:
    """Unpickling this calls Path.write_text(marker): proof that code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code ran while loading")


def test_pth_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    pth = tmp_path / "bert_model.pth"
    torch.save({"word_embeddings.weight": torch.zeros(3, 4), "note": _WritesMarker(marker)}, pth)

    message = _raises("cannot read weights", pth)

    assert str(pth) in message
    assert not marker.exists()
    # the payload is live: what unpickling would call does write the marker
    function, arguments = _WritesMarker(marker).__reduce__()
    function(*arguments)
    assert marker.exists()


def test_pth_with_a_non_tensor_value_is_refused(tmp_path):
    pth = tmp_path / "bert_model.pth"
    torch.save(collections.OrderedDict([("word_embeddings.weight", torch.zeros(3, 4)), ("note", "epoch 3")]), pth)
    assert str(pth) in _raises("not a state dict of tensors", pth)


def test_tutorial_pth_without_a_tokenizer_beside_it_is_refused(tmp_path, small_tokenizer):
    pth = _save_tutorial(TutorialBertModel(_tutorial_config(small_tokenizer, layers=1)), tmp_path, tokenizer_file=None)
    message = _raises("no tokenizer beside it", pth, num_heads=4)
    assert str(pth) in message and "wikitext-2_wordpiece.json" in message and "--tokenizer" in message


def test_hub_name_while_offline_asks_for_a_local_folder(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)  # so the name is not a local path by accident

    message = _raises("downloading it from the Hugging Face hub failed", "some-org/some-bert-model")

    assert "some-org/some-bert-model" in message and "pass a local folder" in message


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        load_pretrained("embedded", head="token-classification")
