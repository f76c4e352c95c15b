"""`bertfit pretrain` end to end on a tiny corpus: the saved folders against transformers, the tutorial's
files fine-tuned by bertfit, resume after SIGKILL, the time budget, and the refusals."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer

from runs import bertfit_process, kill_and_resume

from bertfit import optim
from bertfit.cli import main
from bertfit.demo import write_sentiment_data
from bertfit.pretrained import load_pretrained
from bertfit.recipes.glue import GlueOptions, finetune_glue
from bertfit.recipes.pretrain import PretrainOptions, pretrain
from bertfit.settings import PRETRAIN_DEFAULTS
from bertfit.tokenizer_training import train_bpe, train_wordpiece
from bertfit.training import TimeBudget

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = dict(max_steps=8, batch_size=4, eval_every=4, precision="fp32", lr=1e-3, log_every=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Documents of the demo's sentiment sentences, a tokenizer trained on them, and the GLUE files they came from."""
    folder = tmp_path_factory.mktemp("corpus")
    glue = write_sentiment_data(folder / "glue", train_size=160, dev_size=24)
    sentences = [line.split("\t")[0] for line in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]]
    documents = [sentences[i : i + 8] for i in range(0, len(sentences), 8)]
    train = folder / "train.txt"
    train.write_text("\n\n".join("\n".join(doc) for doc in documents[:-3]) + "\n", encoding="utf-8")
    valid = folder / "valid.txt"
    valid.write_text("\n\n".join("\n".join(doc) for doc in documents[-3:]) + "\n", encoding="utf-8")
    train_wordpiece([str(train)], folder / "wordpiece.json", vocab_size=150, min_frequency=1, quiet=True)
    train_bpe([str(train)], folder / "bpe.json", vocab_size=300, min_frequency=1, quiet=True)
    return folder, glue


TOKENIZER_OF = {"bert": "wordpiece.json", "roberta": "bpe.json", "modernbert": "bpe.json"}


def options(corpus, run_dir: Path, **more) -> PretrainOptions:
    folder, _ = corpus
    tokenizer = TOKENIZER_OF[more.get("architecture") or "bert"]
    return PretrainOptions(**{"train_files": (str(folder / "train.txt"),), "validation_file": str(folder / "valid.txt"),
                              "tokenizer": str(folder / tokenizer), "size": "tiny", "output_dir": str(run_dir),
                              "max_seq_length": 24, "quiet": True, **more})


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))


def assert_same_masked_lm(ours, tokenizer, theirs, batch: dict, texts: list[str]) -> None:
    """transformers' tokenizer gave `batch` bertfit's ids for each of `texts`, and both models the same logits at
    the real tokens (fp32, 1e-5)."""
    for i, text in enumerate(texts):
        assert batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() == tokenizer.encode(text).ids
    with torch.no_grad():
        expected = theirs(**batch).logits
        got = ours.eval()(batch["input_ids"], attention_mask=batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


def test_a_pretraining_run_writes_a_masked_lm_folder_transformers_loads_with_equal_logits(corpus, tmp_path):
    results = pretrain(options(corpus, tmp_path / "run"), SETTINGS)
    assert results["task"] == "pretrain" and results["steps"] == 8
    assert set(results["metrics"]) == {"mlm_accuracy", "mlm_loss", "perplexity"}
    assert results["metrics"]["perplexity"] == pytest.approx(math.exp(results["metrics"]["mlm_loss"]))
    assert results["train_tokens_seen"] == 8 * 4 * 24  # packed: every sequence full, no padding
    first, last = [e["loss"] for e in runs_log(tmp_path / "run") if e["event"] == "train"][::3][:2]
    assert last < first

    ours, tokenizer = load_pretrained(tmp_path / "run" / "model", head="mlm")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model").eval()
    ids = torch.tensor([tokenizer.encode("the film was a delight [MASK] end").ids])
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(ids), theirs(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    assert (tmp_path / "run" / "report.md").exists() and (tmp_path / "run" / "curves.png").exists()


def test_a_roberta_pretraining_run_writes_a_roberta_masked_lm_transformers_loads_with_equal_logits(corpus, tmp_path):
    """--architecture roberta: the BPE tokenizer, no NSP, whole paragraphs packed (so padded batches), no token types,
    positions counted from the padding id + 1; transformers' Auto classes read the folder, the tokenizer included."""
    results = pretrain(options(corpus, tmp_path / "run", architecture="roberta"), SETTINGS)
    assert results["settings"]["architecture"] == "roberta" and results["steps"] == 8
    counts = results["train_sequence_counts"]
    assert counts["sequences"] > 0 and counts["padding"] > 0 and "blocks" not in counts  # full sentences, not blocks
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["architectures"] == ["RobertaForMaskedLM"]
    assert (config["type_vocab_size"], config["pad_token_id"], config["max_position_embeddings"]) == (1, 1, 514)
    assert config["bertfit"]["architecture"] == "roberta"
    assert not (tmp_path / "run" / "bert_model.pth").exists()  # the tutorial's files are a BERT's

    ours, tokenizer = load_pretrained(tmp_path / "run" / "model", head="mlm")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model").eval()
    assert type(theirs).__name__ == "RobertaForMaskedLM"
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    texts = ["the film was a delight <mask> end", "a dull <mask>", "Café crème 😀 <mask> and a much longer text"]
    assert_same_masked_lm(ours, tokenizer, theirs, hf_tokenizer(texts, padding=True, return_tensors="pt"), texts)


def test_a_modernbert_pretraining_run_writes_a_modernbert_masked_lm_transformers_loads_with_equal_logits(
        corpus, tmp_path):
    """--architecture modernbert: ModernBERT's network with its family's defaults (no biases, no dropout, every third
    layer global, a 128-token window), GeGLU at 2/3 of the preset's width, 30% masked, RoBERTa's full sentences and
    BPE; transformers' Auto classes read the folder, on texts longer than the window and padded beside short ones."""
    results = pretrain(options(corpus, tmp_path / "run", architecture="modernbert"), SETTINGS)
    assert results["settings"]["architecture"] == "modernbert" and results["steps"] == 8
    assert results["settings"]["mlm_probability"] == 0.3
    counts = results["train_sequence_counts"]
    assert counts["sequences"] > 0 and counts["padding"] > 0 and "blocks" not in counts  # full sentences, not blocks
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["model_type"] == "modernbert" and config["architectures"] == ["ModernBertForMaskedLM"]
    assert config["bertfit"]["architecture"] == "modernbert" and config["bertfit"]["mlm_probability"] == 0.3
    assert (config["hidden_size"], config["intermediate_size"], config["pad_token_id"]) == (128, 352, 1)
    assert not (tmp_path / "run" / "bert_model.pth").exists()  # the tutorial's files are a BERT's

    ours, tokenizer = load_pretrained(tmp_path / "run" / "model", head="mlm")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model").eval()
    assert type(theirs).__name__ == "ModernBertForMaskedLM"
    default = transformers.ModernBertConfig(num_hidden_layers=2)  # what the family's defaults stand for
    for name in ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias", "decoder_bias", "local_attention",
                 "layer_types", "rope_parameters", "embedding_dropout", "attention_dropout", "mlp_dropout",
                 "classifier_dropout", "classifier_activation", "hidden_activation", "norm_eps"):
        assert getattr(theirs.config, name) == getattr(default, name), name
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    texts = ["the film was a delight <mask> end", "a dull <mask>", "Café crème 😀 <mask> and a longer text " * 12]
    batch = hf_tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] > 2 * config["local_attention"]  # local layers see a part of it only
    assert_same_masked_lm(ours, tokenizer, theirs, batch, texts)


@pytest.mark.parametrize("architecture, given, expected", [
    ("bert", None, 0.15), ("roberta", None, 0.15), ("modernbert", None, 0.3), ("modernbert", 0.2, 0.2)])
def test_the_share_of_tokens_masked_is_the_architectures_unless_given(corpus, architecture, given, expected):
    from bertfit.pretrained import build_model, load_tokenizer
    from bertfit.recipes.pretrain import ARCHITECTURES, mlm_probability, new_config

    folder, _ = corpus
    tokenizer = load_tokenizer(folder / TOKENIZER_OF[architecture])
    config = new_config(ARCHITECTURES[architecture], "tiny", tokenizer, str(folder / TOKENIZER_OF[architecture]), 24)
    model = build_model(config, "mlm")
    chosen = options(corpus, Path("unused"), architecture=architecture, mlm_probability=given)
    assert mlm_probability(chosen, model) == expected


@pytest.mark.parametrize("architecture, classifier", [("roberta", "RobertaForSequenceClassification"),
                                                      ("modernbert", "ModernBertForSequenceClassification")])
def test_a_bpe_pretraining_run_fills_masks_and_fine_tunes_on_sst2_through_the_cli(corpus, tmp_path, capsys,
                                                                                  architecture, classifier):
    pretrain(options(corpus, tmp_path / "run", architecture=architecture), {**SETTINGS, "max_steps": 2,
                                                                            "eval_every": 0})
    from bertfit import inference

    run = inference.load_run(tmp_path / "run", precision="fp32", need="fill-mask")
    [[candidates]] = inference.fill_mask(run, ["the film was a [MASK]"], 3)  # [MASK] in a text is the run's <mask>
    assert len(candidates) == 3 and [c["probability"] for c in candidates] == sorted(
        (c["probability"] for c in candidates), reverse=True)
    assert main(["fill-mask", str(tmp_path / "run"), "the film was a [MASK]", "--precision", "fp32"]) == 0
    _, glue = corpus
    assert main(["glue", "sst2", "--data-dir", str(glue), "--model", str(tmp_path / "run" / "model"), "--output-dir",
                 str(tmp_path / "sst2"), "--max-seq-length", "24", "--max-steps", "4", "--batch-size", "8",
                 "--precision", "fp32", "--quiet"]) == 0
    results = json.loads((tmp_path / "sst2" / "results.json").read_text())
    assert results["steps"] == 4 and 0 <= results["metrics"]["accuracy"] <= 1
    config = json.loads((tmp_path / "sst2" / "model" / "config.json").read_text())
    assert config["architectures"] == [classifier]
    transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2" / "model")


def test_a_pretraining_run_writes_a_model_card_with_the_scores_of_results_json(corpus, tmp_path):
    from cards import check_model_card

    pretrain(options(corpus, tmp_path / "run"), {**SETTINGS, "max_steps": 2, "eval_every": 0})
    metadata = check_model_card(tmp_path / "run", transformers.AutoModelForMaskedLM)
    assert metadata["pipeline_tag"] == "fill-mask" and "base_model" not in metadata  # a new model: none


def test_a_pretraining_run_answers_at_the_length_it_trained_at_and_refuses_longer_texts(corpus, tmp_path):
    from bertfit import inference
    from bertfit.errors import DataError
    from bertfit.export import check_inputs

    pretrain(options(corpus, tmp_path / "run"), {**SETTINGS, "max_steps": 2, "eval_every": 0})
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["bertfit"]["max_seq_length"] == 24
    run = inference.load_run(tmp_path / "run", precision="fp32", need="fill-mask")
    assert run.model_positions == 512  # positions 24 to 511 were never trained
    assert run.max_seq_length == 24 and run.describe()["max_seq_length"] == 24  # GET /v1/models
    words = "the film was a delight and " * 4 + "[MASK]"
    assert 24 < len(run.tokenizer.encode(words).ids) < 512
    with pytest.raises(DataError, match="at most 24"):
        inference.fill_mask(run, [words])
    assert inference.fill_mask(run, ["the film was a [MASK]"], 2)  # a text that fits is answered
    assert max(batch["input_ids"].shape[1] for batch in check_inputs(run)) == 24  # the export checks that length


def test_a_pretraining_run_saved_without_its_length_in_config_json_takes_it_from_results_json(tmp_path):
    from runs import masked_lm_run

    from bertfit import inference

    run_dir = masked_lm_run(tmp_path / "run")  # its config.json holds no max_seq_length, as older runs saved it
    assert inference.load_run(run_dir).max_seq_length == 128  # the model's positions: nothing says otherwise
    (run_dir / "results.json").write_text(json.dumps({"task": "pretrain", "settings": {"max_seq_length": 24}}))
    assert inference.load_run(run_dir).max_seq_length == 24


def runs_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_the_tutorial_files_of_a_pretraining_run_fine_tune_in_bertfit(corpus, tmp_path):
    pretrain(options(corpus, tmp_path / "run", name="wikitext-2"), SETTINGS)
    pth = tmp_path / "run" / "bert_model.pth"
    assert (tmp_path / "run" / "wikitext-2_wordpiece.json").exists()
    assert all(isinstance(v, torch.Tensor) for v in torch.load(pth, weights_only=True).values())
    # the tutorial's BertModel in the tiny preset's sizes loads it strictly: a pooler too, though MLM has none
    from test_pretrained import TutorialBertModel, TutorialConfig

    vocab = Tokenizer.from_file(str(tmp_path / "run" / "wikitext-2_wordpiece.json")).get_vocab_size()
    TutorialBertModel(TutorialConfig(vocab_size=vocab, num_layers=2, hidden_size=128, num_heads=2)).load_state_dict(
        torch.load(pth, weights_only=True))
    results = finetune_glue(GlueOptions(task="sst2", model=str(pth), num_heads=2, data_dir=str(corpus[1]),
                                        output_dir=str(tmp_path / "sst2"), max_seq_length=24, quiet=True),
                            {"max_steps": 6, "batch_size": 8, "precision": "fp32"})
    assert results["steps"] == 6 and 0 <= results["metrics"]["accuracy"] <= 1
    # the same encoder as the Hugging Face folder of the same run; a .pth holds no config, and bertfit reads
    # its LayerNorms with the tutorial's eps (1e-5, where the run's config says BERT's 1e-12)
    from_pth, _ = load_pretrained(pth, head="base", num_heads=2)
    from_folder, tokenizer = load_pretrained(tmp_path / "run" / "model", head="base")
    assert from_pth.state_dict().keys() == from_folder.state_dict().keys()
    # (an MLM model has no pooler: both start theirs afresh)
    assert all(torch.equal(v, from_folder.state_dict()[k]) for k, v in from_pth.state_dict().items()
               if not k.startswith("pooler."))
    ids = torch.tensor([tokenizer.encode("a dull and tired film").ids])
    with torch.no_grad():
        torch.testing.assert_close(from_pth.eval()(ids)[0], from_folder.eval()(ids)[0], atol=1e-3, rtol=0)


def test_nsp_pretraining_scores_next_sentence_accuracy_and_saves_a_bert_for_pretraining(corpus, tmp_path):
    results = pretrain(options(corpus, tmp_path / "run", nsp=True, max_seq_length=48), SETTINGS)
    assert 0 <= results["metrics"]["nsp_accuracy"] <= 1
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]
    transformers.BertForPreTraining.from_pretrained(tmp_path / "run" / "model")


def test_continued_pretraining_starts_from_the_given_model(corpus, tmp_path):
    pretrain(options(corpus, tmp_path / "first"), SETTINGS)
    again = replace(options(corpus, tmp_path / "second"), size=None, tokenizer=None,
                    model=str(tmp_path / "first" / "model"))
    results = pretrain(again, {**SETTINGS, "max_steps": 2, "lr": 0.0})  # lr 0: the weights stay the model's
    first = load_pretrained(tmp_path / "first" / "model", head="mlm")[0].state_dict()
    second = load_pretrained(tmp_path / "second" / "model", head="mlm")[0].state_dict()
    assert results["model"] == str(tmp_path / "first" / "model")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_continued_pretraining_of_a_modernbert_writes_its_folder_and_no_tutorial_files(corpus, tmp_path):
    """The tutorial's BertModel has no place for ModernBERT's parts: the run keeps the Hugging Face folder alone,
    which transformers loads with equal logits."""
    import families

    tokenizer = families.TOKENIZER_OF["modernbert"]()
    config = families.transformers_config("modernbert", tokenizer.get_vocab_size())
    start = families.save_with_tokenizer(families.randomise(transformers.AutoModelForMaskedLM.from_config(config)),
                                         tokenizer, "modernbert", tmp_path / "start")
    again = replace(options(corpus, tmp_path / "run"), size=None, tokenizer=None, model=str(start))
    results = pretrain(again, {**SETTINGS, "max_steps": 2})
    assert results["steps"] == 2
    assert not list((tmp_path / "run").glob("*.pth")) and not list((tmp_path / "run").glob("*_wordpiece.json"))
    ours, tokenizer = load_pretrained(tmp_path / "run" / "model", head="mlm")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model").eval()
    assert type(theirs).__name__ == "ModernBertForMaskedLM"
    ids = torch.tensor([tokenizer.encode("the film was a delight [MASK] end, and the cast was fine").ids])
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(ids), theirs(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_a_time_budget_stops_the_run_and_keeps_its_model(corpus, tmp_path):
    results = pretrain(options(corpus, tmp_path / "run"), {**SETTINGS, "max_steps": 0, "epochs": 50,
                                                            "max_time": 1e-6})
    assert results["steps"] == 1 and results["time_budget"]["out_of_time"]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_the_time_budget_plans_the_steps_that_fit_after_timing_the_first_ones():
    budget = TimeBudget(seconds=100.0, eval_every=10)
    start = 2  # a resumed run: timing starts where it is
    planned = [budget.plan(step, elapsed=0.5 * (step - start) + 1.0, most=10_000) for step in range(start, start + 30)]
    timed_at = start + TimeBudget.WARM_STEPS + TimeBudget.CALIBRATION
    assert planned[: timed_at - start] == [None] * (timed_at - start)
    elapsed = 0.5 * (timed_at - start) + 1.0
    assert planned[timed_at - start] == timed_at + int((100.0 - elapsed) / 0.5)  # 0.5 s a step
    # an evaluation of 5 s every 10 steps: 1 s a step, and room for the last evaluation
    assert budget.replan(timed_at, elapsed, 10_000, eval_seconds=5.0) == timed_at + int((100.0 - elapsed - 5.0) / 1.0)
    assert budget.replan(timed_at, elapsed, most=30, eval_seconds=5.0) == 30  # never past the epochs' steps


def test_the_cosine_schedule_decays_as_transformers_cosine_schedule_after_warmup():
    peak, warmup, total = 1e-3, 3, 20
    theirs = transformers.get_cosine_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=peak), warmup, total)
    for step in range(total):
        expected = theirs.get_last_lr()[0]
        if step >= warmup:
            assert optim.schedule_factor("cosine", step, warmup, total) * peak == pytest.approx(expected, abs=1e-12)
        theirs.optimizer.step()
        theirs.step()


@pytest.mark.parametrize("architecture", ["bert", "roberta", "modernbert"])
def test_a_killed_pretraining_run_resumes_bitwise_equal_to_an_uninterrupted_one(corpus, tmp_path, architecture):
    folder, _ = corpus

    def command(name):
        args = ["pretrain", "--train-file", folder / "train.txt", "--validation-file", folder / "valid.txt",
                "--tokenizer", folder / TOKENIZER_OF[architecture], "--architecture", architecture, "--size", "tiny",
                "--max-seq-length", "24", "--output-dir", tmp_path / name, "--precision", "fp32", "--batch-size", "4",
                "--max-steps", "16", "--eval-every", "6", "--save-every", "2", "--quiet"]
        return bertfit_process(args, tmp_path / f"cache-{name}")

    kill_and_resume(command, tmp_path / "resumed" / "checkpoints", timeout=120)

    whole, again = tmp_path / "whole", tmp_path / "resumed"
    a, b = (json.loads((run / "results.json").read_text()) for run in (whole, again))
    assert a["steps"] == b["steps"] == 16 and a["metrics"] == b["metrics"] and a["history"] == b["history"]
    assert a["settings"]["architecture"] == architecture
    for weights in ("model/model.safetensors", "bert_model.pth")[: 2 if architecture == "bert" else 1]:
        assert (whole / weights).read_bytes() == (again / weights).read_bytes(), weights


@pytest.mark.parametrize("arguments, message", [
    (["--size", "tiny"], "needs --tokenizer"),
    (["--size", "tiny", "--model", "embedded"], "either --size"),
    (["--size", "huge", "--tokenizer", "TOKENIZER"], "huge"),
    (["--size", "tiny", "--tokenizer", "TOKENIZER", "--mlm-probability", "1.5"], "--mlm-probability"),
    (["--size", "tiny", "--tokenizer", "TOKENIZER", "--max-time", "ten minutes"], "--max-time"),
    (["--size", "tiny", "--tokenizer", "TOKENIZER", "--architecture", "roberta"],
     "wordpiece.json: a wordpiece tokenizer, and --architecture roberta takes a bpe one "
     "(`bertfit tokenizer --kind bpe`)"),
    (["--size", "tiny", "--tokenizer", "BPE", "--architecture", "roberta", "--nsp"],
     "--nsp (next-sentence prediction) is BERT's: --architecture roberta pretrains with masked-language modelling"),
    (["--size", "tiny", "--tokenizer", "BPE"], "bpe.json: a bpe tokenizer, and --architecture bert takes a wordpiece"),
    (["--model", "embedded", "--architecture", "roberta"],
     "--model continues pretraining the model's own architecture"),
    (["--size", "tiny", "--tokenizer", "TOKENIZER", "--architecture", "modernbert"],
     "wordpiece.json: a wordpiece tokenizer, and --architecture modernbert takes a bpe one"),
    (["--size", "tiny", "--tokenizer", "BPE", "--architecture", "modernbert", "--nsp"],
     "--nsp (next-sentence prediction) is BERT's: --architecture modernbert pretrains with masked-language modelling"),
])
def test_pretrain_refuses_what_cannot_work_with_one_line_and_no_run_dir(corpus, tmp_path, capsys, arguments, message):
    folder, _ = corpus
    files = {"TOKENIZER": str(folder / "wordpiece.json"), "BPE": str(folder / "bpe.json")}
    arguments = [files.get(a, a) for a in arguments]
    try:
        code = main(["pretrain", "--train-file", str(folder / "train.txt"), "--output-dir", str(tmp_path / "run"),
                     *arguments])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---- the tutorial's files, as the tutorial's own scripts load them --------------------------------------

@pytest.mark.timeout(300)
def test_the_tutorial_preset_writes_a_bert_model_pth_the_tutorials_bert_model_loads_strictly(corpus, tmp_path):
    """The tutorial's fine-tuning builds BertModel(BertConfig()) (30,522 vocabulary rows, a pooler) and calls a strict
    load_state_dict(torch.load("bert_model.pth")): MLM without --nsp has no pooler, and a small tokenizer fewer rows."""
    from test_pretrained import TutorialBertModel, TutorialConfig

    pretrain(options(corpus, tmp_path / "run", size="tutorial", max_eval_samples=2),
             {**SETTINGS, "max_steps": 1, "batch_size": 2, "eval_every": 0})
    state = torch.load(tmp_path / "run" / "bert_model.pth", weights_only=True)
    TutorialBertModel(TutorialConfig()).load_state_dict(state)  # strict
    tokenizer_rows = len(load_pretrained(tmp_path / "run" / "model", head="mlm")[1].get_vocab())
    folder = load_pretrained(tmp_path / "run" / "model", head="mlm")[0].bert.embeddings.word_embeddings.weight
    assert torch.equal(state["word_embeddings.weight"][:tokenizer_rows], folder)
    assert not state["word_embeddings.weight"][tokenizer_rows:].any()  # rows no token of the tokenizer reaches


def test_the_tutorial_preset_says_before_training_why_its_files_will_not_load_in_the_tutorials_bert_model(
        corpus, tmp_path, capsys):
    from bertfit.recipes.pretrain import start
    from bertfit.tokenizer_training import SPECIAL_TOKENS

    big = load_pretrained(None)[1]  # the embedded model's tokenizer (30,522 tokens), grown past the tutorial's rows
    big.add_tokens([f"word{i}" for i in range(40)])
    path = tmp_path / "big.json"
    big.save(str(path))
    assert all(big.token_to_id(t) is not None for t in SPECIAL_TOKENS)
    start(options(corpus, tmp_path / "run", size="tutorial", tokenizer=str(path), max_seq_length=600),
          replace(PRETRAIN_DEFAULTS))
    warning = capsys.readouterr().err
    assert "will not load this run's bert_model.pth" in warning
    assert f"{big.get_vocab_size():,} tokens, more than the 30,522 rows" in warning
    assert "--max-seq-length 600 needs more than its 512 positions" in warning


def test_reports_show_pretraining_accuracies_x100_as_glue_scores_and_its_loss_as_it_is():
    from bertfit import reports

    scores = {"mlm_accuracy": 0.25, "mlm_loss": 3.5, "perplexity": 33.1, "nsp_accuracy": 0.5}
    assert reports.key_metrics("pretrain", scores) == {"mlm_accuracy": 25.0, "mlm_loss": 3.5, "perplexity": 33.1,
                                                       "nsp_accuracy": 50.0}
    assert reports.key_metrics("sst2", {"accuracy": 0.25}) == {"accuracy": 25.0}
    text = reports.run_markdown(Path("run"), {"task": "pretrain", "metrics": scores}, [])
    assert "## Result (held-out text; accuracies ×100)" in text and "| mlm_accuracy | 25.00 |" in text
