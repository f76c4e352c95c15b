import pytest
import torch

from bertfit.errors import ConfigError
from bertfit.model import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel
from bertfit.pretrained import embedded_model_path, load_pretrained

transformers = pytest.importorskip("transformers")


def test_embedded_model_matches_transformers_on_a_padded_batch(real_batch):
    input_ids, token_type_ids, mask = real_batch
    ours, _ = load_pretrained()
    theirs = transformers.BertModel.from_pretrained(str(embedded_model_path())).eval()
    ours.eval()
    with torch.no_grad():
        sequence, pooled = ours(input_ids, token_type_ids, mask)
        reference = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())
    assert mask.sum() < mask.numel(), "the batch must contain padding"
    assert (sequence - reference.last_hidden_state).abs()[mask].max() <= 1e-5
    assert (pooled - reference.pooler_output).abs().max() <= 1e-5


def test_pads_are_found_from_the_config_when_no_mask_is_given(real_batch):
    input_ids, token_type_ids, mask = real_batch
    model, _ = load_pretrained()
    model.eval()
    with torch.no_grad():
        with_mask, _ = model(input_ids, token_type_ids, mask)
        without, _ = model(input_ids, token_type_ids)
    assert torch.equal(with_mask[mask], without[mask])


def test_pad_positions_do_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0]])
    with torch.no_grad():
        short, _ = model(ids)
        long, _ = model(padded)
    torch.testing.assert_close(short[0], long[0, :4], atol=1e-6, rtol=0)


def test_heads_shapes_and_regression_head():
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64)
    ids = torch.randint(1, 50, (3, 9))
    assert BertForSequenceClassification(config, num_labels=1)(ids).shape == (3, 1)
    assert BertForSequenceClassification(config, num_labels=3)(ids).shape == (3, 3)
    start, end = BertForQuestionAnswering(config)(ids)
    assert start.shape == end.shape == (3, 9)


def test_the_span_head_has_no_pooler_and_loads_a_checkpoint_that_has_one(real_batch):
    model, _ = load_pretrained(embedded_model_path(), head="qa")
    assert model.bert.pooler is None and not [n for n, _ in model.named_parameters() if "pooler" in n]
    base, _ = load_pretrained(embedded_model_path())
    model.eval(), base.eval()
    with torch.no_grad():
        sequence, _ = base(*real_batch)
        assert model.bert(*real_batch)[1] is None
        torch.testing.assert_close(model.bert(*real_batch)[0], sequence, atol=0, rtol=0)


def test_sequence_longer_than_position_table_is_refused():
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=8)
    with pytest.raises(ConfigError, match="longer than the model's 8 positions; lower --max-seq-length"):
        BertModel(config)(torch.ones(1, 9, dtype=torch.long))


def test_hidden_size_not_a_multiple_of_the_heads_is_a_config_error():
    with pytest.raises(ConfigError, match="hidden_size 30 is not a multiple of num_attention_heads 4"):
        BertConfig(vocab_size=50, hidden_size=30, num_attention_heads=4)
