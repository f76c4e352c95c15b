import pytest
import torch
import torch.nn.functional as F

from bertfit.errors import ConfigError
from bertfit.model import (PRETRAIN_SIZES, BertConfig, BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
                           BertForSequenceClassification, BertModel, init_weights, pretrain_config)
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


# ---- the pretraining heads ----------------------------------------------------------------------

def _tiny_lm(cls=BertForMaskedLM, seed: int = 0):
    torch.manual_seed(seed)
    model = cls(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, pad_token_id=0))
    init_weights(model, model.bert.config)
    with torch.no_grad():
        model.cls.bias.normal_()  # a bias that is not zero, so that a missing one shows
    return model.eval()


@pytest.mark.parametrize("cls", [BertForMaskedLM, BertForPreTraining])
def test_lm_logits_at_chosen_positions_are_the_full_logits_there(cls):
    model = _tiny_lm(cls)
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0], [2, 11, 12, 13, 14, 15, 3]])
    positions = torch.tensor([[0, 1, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        full, chosen = model(ids), model(ids, positions=positions)
    if cls is BertForPreTraining:
        (full, nsp), (chosen, nsp_chosen) = full, chosen
        assert nsp.shape == (2, 2) and torch.equal(nsp, nsp_chosen)
    assert full.shape == (2, 7, 50) and chosen.shape == (4, 50)
    torch.testing.assert_close(chosen, full[positions], atol=1e-6, rtol=0)


def test_lm_decoder_is_the_word_embedding_matrix_held_once():
    model = _tiny_lm()
    ids = torch.tensor([[2, 7, 8, 3]])
    hidden = model.bert(ids)[0]
    head = model.cls
    by_hand = F.layer_norm(F.gelu(head.dense(hidden)), (32,), head.norm.weight, head.norm.bias, 1e-12) \
        @ model.bert.embeddings.word_embeddings.weight.T + head.bias
    torch.testing.assert_close(model(ids), by_hand, atol=1e-5, rtol=0)
    # one tensor, under one name: the state dict and the optimizer see the embedding matrix once
    assert [k for k in model.state_dict() if model.state_dict()[k].shape == (50, 32)] == \
        ["bert.embeddings.word_embeddings.weight"]
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[9].fill_(5.0)
    assert not torch.allclose(model(ids)[..., 9], by_hand[..., 9].detach())


def test_sparse_lookup_gradients_and_the_decoders_add_into_the_dense_gradient_of_the_table():
    """The loop's EmbeddingRowGrads makes lookups sparse on CPU; the tied decoder's gradient is dense,
    and the two must sum to the gradient of a plain model."""
    dense, sparse = _tiny_lm(), _tiny_lm()
    sparse.bert.embeddings.word_embeddings.sparse = True
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 7, 4, 3]])
    labels = torch.tensor([[-100, 9, -100, 8, -100], [-100, -100, 30, -100, -100]])
    for model in (dense, sparse):
        model.train()
        torch.manual_seed(1)  # the same dropout in both
        F.cross_entropy(model(ids, positions=labels != -100), labels[labels != -100]).backward()
    got = sparse.bert.embeddings.word_embeddings.weight.grad
    expected = dense.bert.embeddings.word_embeddings.weight.grad
    torch.testing.assert_close(got.to_dense() if got.is_sparse else got, expected, atol=1e-6, rtol=0)
    assert expected[20].abs().sum() > 0  # a row no input reads still learns, through the decoder


def test_init_weights_zeroes_the_pad_row_and_the_lm_bias():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                          intermediate_size=64, pad_token_id=3))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    init_weights(model, model.bert.config)
    words = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(words[3], torch.zeros(32)) and words[4].abs().sum() > 0
    assert 0.015 < float(words[4:].detach().std()) < 0.025  # initializer_range 0.02
    assert torch.equal(model.cls.bias, torch.zeros(50)) and torch.equal(model.seq_relationship.bias, torch.zeros(2))
    assert torch.equal(model.cls.norm.weight, torch.ones(32))


def test_pretrain_sizes_are_the_tutorials_and_googles_miniatures():
    shapes = {name: (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["intermediate_size"])
              for name, c in PRETRAIN_SIZES.items()}
    assert shapes == {"tutorial": (12, 768, 12, 3072), "tiny": (2, 128, 2, 512), "mini": (4, 256, 4, 1024),
                      "small": (4, 512, 8, 2048), "medium": (8, 512, 8, 2048)}
    config = pretrain_config("mini", vocab_size=8000, pad_token_id=1, max_position_embeddings=128)
    assert (config.vocab_size, config.pad_token_id, config.max_position_embeddings) == (8000, 1, 128)
    assert (config.num_hidden_layers, config.hidden_size, config.type_vocab_size) == (4, 256, 2)
    tutorial = pretrain_config("tutorial", vocab_size=30522, pad_token_id=0)
    assert (tutorial.hidden_dropout_prob, tutorial.attention_probs_dropout_prob) == (0.1, 0.1)
    assert tutorial.layer_norm_eps == 1e-5 and tutorial.max_position_embeddings == 512


def test_unknown_pretrain_size_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model size 'huge'; known sizes: tutorial, tiny, mini, small, medium"):
        pretrain_config("huge", vocab_size=100, pad_token_id=0)
