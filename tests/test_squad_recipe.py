"""The SQuAD pipeline end to end: fine-tune, decode, score, write the prediction files, answer and evaluate,
through the API and the CLI.

The runs use the tiny BERT over the embedded tokenizer (conftest) on questions about people written
here, except the one that shows the embedded model learns to find answers.
"""
import json
import random
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import transformers

from bertfit import predicting, squad_metrics
from bertfit.pretrained import load_pretrained, save_pretrained
from bertfit.cli import main
from bertfit.recipes.squad import SquadOptions, finetune_squad, score, span_loss, write_predictions
from bertfit.tasks.squad import Answer, Predictions, SquadQuestion, decode, make_windows, read_squad
from bertfit.tokenization import special_ids
from bertfit.settings import TrainSettings

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest)

NAMES = ["alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "irene", "jack", "kate", "liam",
         "mary", "nick", "olivia", "peter", "rose", "sam", "tina", "victor"]
CITIES = ["paris", "london", "tokyo", "madrid", "rome", "berlin", "oslo", "lima", "cairo", "delhi", "vienna",
          "dublin", "boston", "sydney", "moscow", "prague"]
JOBS = ["baker", "doctor", "pilot", "teacher", "farmer", "lawyer", "nurse", "painter", "chef", "driver", "singer",
        "dentist"]
WINDOWS = ["--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "16"]
# How far bf16 moves a span's score (a sum of two logits of a few units) or the null odds from float32's
BF16_SCORE_TOLERANCE = 0.1


def people_file(path: Path, n: int, seed: int, version: str = "1.1", long_every: int = 0, bad: int = 0) -> Path:
    """n questions on contexts "NAME lives in CITY and works as a JOB ."; in v2.0 every third asks about someone
    absent (unanswerable). `long_every`: every k-th context is padded with filler to need several windows;
    `bad`: that many more questions whose answer_start is off by one (malformed)."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n + bad):
        name, city, job = rng.choice(NAMES), rng.choice(CITIES), rng.choice(JOBS)
        context = f"{name} lives in {city} and works as a {job} ."
        if long_every and i % long_every == 0:
            context = "the weather was mild that year . " * 6 + context
        qa = {"id": f"s{seed}-q{i}"}
        if version == "2.0" and i % 3 == 2 and i < n:
            absent = rng.choice([other for other in NAMES if other != name])
            qa.update(question=f"where does {absent} live ?", answers=[], is_impossible=True)
        else:
            question, answer = (f"where does {name} live ?", city) if i % 2 else (f"what does {name} work as ?", job)
            start = context.rindex(f" {answer} ") + 1 + (i >= n)  # the bad ones point one character too far
            qa.update(question=question, answers=[{"text": answer, "answer_start": start}])
            if version == "2.0":
                qa["is_impossible"] = False
        paragraphs.append({"context": context, "qas": [qa]})
    path.write_text(json.dumps({"version": version, "data": [{"title": "people", "paragraphs": paragraphs}]}))
    return path


class Run(NamedTuple):
    dir: Path
    results: dict
    eval_file: Path


@pytest.fixture(scope="module")
def squad_run(tmp_path_factory, tiny_model) -> Run:
    """`bertfit squad --version 2.0` with the tiny model, skipping one malformed question in each file."""
    root = tmp_path_factory.mktemp("squad")
    train = people_file(root / "train.json", 48, seed=1, version="2.0", long_every=5, bad=1)
    dev = people_file(root / "dev.json", 18, seed=2, version="2.0", long_every=4, bad=1)
    assert main(["squad", "--version", "2.0", "--train-file", str(train), "--eval-file", str(dev), "--model",
                 tiny_model, "--output-dir", str(root / "run"), "--epochs", "1", "--lr", "1e-3", "--batch-size", "8",
                 "--precision", "fp32", "--skip-bad-examples", "--quiet", *WINDOWS]) == 0
    scored = people_file(root / "dev-scored.json", 18, seed=2, version="2.0", long_every=4)  # the 18 it scored
    return Run(root / "run", json.loads((root / "run" / "results.json").read_text()), scored)


def test_a_squad_run_writes_results_counting_questions_windows_and_skipped_questions(squad_run):
    results = squad_run.results
    assert results["task"] == "squad-v2.0"
    assert results["train_examples"] == 48 and results["eval_examples"] == 18
    assert results["skipped_examples"] == 2
    assert results["train_windows"] > 48 and results["eval_windows"] > 18  # the long contexts need several
    assert results["steps"] == results["train_windows"] // 8 + (results["train_windows"] % 8 > 0)
    assert list(results["metrics"])[:2] == ["f1", "exact"]
    assert {"HasAns_f1", "NoAns_exact", "best_f1", "null_threshold"} <= set(results["metrics"])
    # no validation file: nothing is chosen on the evaluation file
    assert results["model_chosen_by"] == "final epoch" and results["best_step"] == results["steps"]
    assert results["threshold_chosen_on"] == "none: 0.0, the decoding default"
    assert results["metrics"]["null_threshold"] == 0.0 and "not used for the saved model" in results["official_sweep"]


def test_the_scores_of_a_run_are_the_scores_of_the_files_it_writes(squad_run, capsys):
    run = squad_run.dir
    predictions = json.loads((run / "predictions.json").read_text())
    null_odds = json.loads((run / "null_odds.json").read_text())
    assert len(predictions) == len(null_odds) == 18

    assert main(["evaluate-squad", str(squad_run.eval_file), str(run / "predictions.json"),
                 "--na-prob-file", str(run / "null_odds.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = squad_run.results["metrics"]
    assert printed == {k: pytest.approx(v) for k, v in metrics.items()
                       if k != "null_threshold"}
    assert main(["evaluate-squad", str(squad_run.eval_file), str(run / "predictions.json")]) == 0
    without_odds = json.loads(capsys.readouterr().out)
    assert (without_odds["exact"], without_odds["f1"]) == (pytest.approx(metrics["exact"]), pytest.approx(metrics["f1"]))


def test_v2_scores_at_a_null_threshold_above_1_are_the_scores_of_the_answers():
    context = "bob lives in oslo and works as a chef ."
    questions = [SquadQuestion("q1", "T", "where does bob live ?", context, [Answer("oslo", 13)]),
                 SquadQuestion("q2", "T", "where does sam live ?", context, [], is_impossible=True)]
    # as decode answers at threshold 2: null odds 1.5 keeps the span, 3.0 answers nothing
    predictions = Predictions(answers={"q1": "oslo", "q2": ""}, null_odds={"q1": 1.5, "q2": 3.0},
                              best_spans={"q1": "oslo", "q2": "chef"}, nbest={})
    scores = score(questions, predictions, "2.0", null_threshold=2.0)
    assert (scores["exact"], scores["f1"]) == (100.0, 100.0)
    plain = squad_metrics.squad_v2_scores(questions, predictions.answers)
    assert (scores["exact"], scores["f1"]) == (plain["exact"], plain["f1"])


def test_write_predictions_writes_answers_nbest_without_the_null_entry_and_null_odds(tmp_path):
    nbest = {"q1": [{"text": "oslo", "score": 3.0}, {"text": "", "score": 1.0}, {"text": "chef", "score": 0.5}],
             "q2": [{"text": "", "score": 2.0}]}
    predictions = Predictions(answers={"q1": "oslo", "q2": ""}, null_odds={"q1": -2.0, "q2": 1e6},
                              best_spans={"q1": "oslo", "q2": ""}, nbest=nbest)
    (tmp_path / "v2").mkdir()
    write_predictions(tmp_path / "v2", predictions, "2.0")
    read = lambda name: json.loads((tmp_path / "v2" / name).read_text())
    assert read("predictions.json") == {"q1": "oslo", "q2": ""}
    assert read("nbest_predictions.json") == {"q1": [{"text": "oslo", "score": 3.0}, {"text": "chef", "score": 0.5}],
                                              "q2": []}
    assert read("null_odds.json") == {"q1": -2.0, "q2": 1e6}
    (tmp_path / "v1").mkdir()
    write_predictions(tmp_path / "v1", predictions, "1.1")
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["nbest_predictions.json", "predictions.json"]


def test_qa_answers_a_question_as_the_run_predicted_it(squad_run, tmp_path, auto_precision, capsys):
    paragraphs = json.loads(squad_run.eval_file.read_text())["data"][0]["paragraphs"]
    nbest = json.loads((squad_run.dir / "nbest_predictions.json").read_text())
    null_odds = json.loads((squad_run.dir / "null_odds.json").read_text())
    saved = json.loads((squad_run.dir / "model" / "config.json").read_text())["bertfit"]["null_threshold"]
    assert saved == squad_run.results["metrics"]["null_threshold"] == 0.0  # no validation file: the default
    context_file = tmp_path / "context.txt"
    for paragraph in paragraphs[:4]:
        (qa,) = paragraph["qas"]
        context_file.write_text(paragraph["context"], encoding="utf-8")
        command = ["qa", str(squad_run.dir), "--question", qa["question"], "--context-file", str(context_file)]
        for threshold, flags in ((saved, []), (1e9, ["--null-threshold=1e9"]), (-1e9, ["--null-threshold=-1e9"])):
            assert main(command + flags) == 0
            lines = capsys.readouterr().out.splitlines()
            odds = null_odds[qa["id"]]
            if auto_precision == "bf16" and abs(odds - threshold) <= BF16_SCORE_TOLERANCE:
                continue  # too near the threshold for bf16 to decide as float32 did
            if odds > threshold:
                if auto_precision == "fp32":
                    assert lines == [f"(no answer: null odds {odds:.2f})"]
                else:
                    (line,) = lines
                    assert line.startswith("(no answer: null odds ")
                    assert float(line.split()[-1].rstrip(")")) == pytest.approx(odds, abs=BF16_SCORE_TOLERANCE)
                continue
            best = nbest[qa["id"]][0]
            if auto_precision == "fp32":  # the run's predictions were made in float32 too: the same to the digit
                assert lines[0] == best["text"]
                assert lines[1].startswith(f"score {best['score']:.2f}  probability {best['probability']:.2f}  "
                                           f"characters {best['char_start']}-{best['char_end']}  "
                                           f"(of {len(paragraph['context'])}, ")
            else:  # bf16 moves scores in their 3rd digit: a candidate about as good as the run's best, its numbers
                score, probability = float(lines[1].split()[1]), float(lines[1].split()[3])
                near = [c for c in nbest[qa["id"]] if abs(c["score"] - best["score"]) <= BF16_SCORE_TOLERANCE]
                chosen = next(c for c in near if c["text"] == lines[0])
                assert score == pytest.approx(chosen["score"], abs=BF16_SCORE_TOLERANCE)
                assert probability == pytest.approx(chosen["probability"], abs=BF16_SCORE_TOLERANCE)
                assert f"characters {chosen['char_start']}-{chosen['char_end']}  " in lines[1]
            assert f"[{lines[0]}]" in lines[2]
    (qa,) = paragraphs[0]["qas"]
    assert main(["qa", str(squad_run.dir), "--question", qa["question"], "--context", paragraphs[0]["context"],
                 "--null-threshold=1e9", "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == nbest[qa["id"]][0]["text"]


def kept_predictions(run_dir: Path, data_file: Path, null_threshold: float) -> tuple[list, Predictions]:
    """A file's questions and the saved model's predictions on them, decoded as the run decodes."""
    extra = json.loads((run_dir / "model" / "config.json").read_text())["bertfit"]
    model, tokenizer = load_pretrained(run_dir / "model", head="qa")
    questions, _ = read_squad(str(data_file))
    features, windows = make_windows(questions, tokenizer, extra["max_seq_length"], extra["doc_stride"],
                                     extra["max_query_length"])
    starts, ends = predicting.predict(model, features, special_ids(tokenizer).pad, torch.device("cpu"),
                                      precision="fp32", per_token=True)
    return questions, decode(questions, windows, starts, ends, version_2=True, null_threshold=null_threshold)


def test_the_saved_v2_threshold_and_the_best_epoch_are_chosen_on_the_validation_file(tmp_path, tiny_model):
    train = people_file(tmp_path / "train.json", 48, seed=1, version="2.0", long_every=5)
    validation = people_file(tmp_path / "validation.json", 18, seed=3, version="2.0", long_every=3)
    evaluation = people_file(tmp_path / "eval.json", 18, seed=2, version="2.0", long_every=4)
    run = tmp_path / "run"
    assert main(["squad", "--version", "2.0", "--train-file", str(train), "--eval-file", str(evaluation),
                 "--validation-file", str(validation), "--model", tiny_model, "--output-dir", str(run),
                 "--epochs", "3", "--lr", "1e-3", "--batch-size", "8", "--precision", "fp32", "--quiet",
                 *WINDOWS]) == 0
    results = json.loads((run / "results.json").read_text())
    saved = json.loads((run / "model" / "config.json").read_text())["bertfit"]["null_threshold"]

    questions, on_validation = kept_predictions(run, validation, 0.0)
    searched = squad_metrics.best_null_threshold(questions, on_validation.best_spans, on_validation.null_odds)
    eval_questions, on_eval = kept_predictions(run, evaluation, 0.0)
    searched_on_eval = squad_metrics.best_null_threshold(eval_questions, on_eval.best_spans, on_eval.null_odds)
    assert searched["threshold"] != pytest.approx(searched_on_eval["threshold"])  # the files disagree
    assert saved == pytest.approx(searched["threshold"], rel=1e-5)
    assert results["threshold_chosen_on"] == "validation" and results["metrics"]["null_threshold"] == saved
    assert results["validation_metrics"]["f1"] == pytest.approx(searched["f1"])
    assert (results["validation_examples"], results["eval_examples"]) == (18, 18)

    # the evaluation file is scored at the validation threshold, by the model chosen on validation
    _, at_saved = kept_predictions(run, evaluation, saved)
    official = squad_metrics.squad_v2_scores(eval_questions, at_saved.answers, na_probs=at_saved.null_odds,
                                             na_prob_thresh=saved)
    assert results["metrics"]["f1"] == pytest.approx(official["f1"]) and "best_f1" in results["metrics"]
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["event"] == "eval"]
    chosen = max(evals, key=lambda e: e["validation_f1"])  # max keeps the first of equals, as the loop does
    assert results["best_step"] == chosen["step"] and results["metrics"]["f1"] == chosen["f1"]
    assert results["model_chosen_by"] == f"best validation f1 ({validation})"


def test_evaluate_squad_scores_a_v1_file_by_the_official_definitions(tmp_path, capsys):
    data = people_file(tmp_path / "dev.json", 2, seed=3)
    qas = [p["qas"][0] for p in json.loads(data.read_text())["data"][0]["paragraphs"]]
    gold = [qa["answers"][0]["text"] for qa in qas]
    (tmp_path / "predictions.json").write_text(json.dumps({qas[0]["id"]: f"the {gold[0]}",
                                                           qas[1]["id"]: f"{gold[1]} and more"}))
    assert main(["evaluate-squad", str(data), str(tmp_path / "predictions.json")]) == 0
    # an article is dropped before comparing: exact; three tokens against one: P 1/3, R 1, F1 1/2
    assert json.loads(capsys.readouterr().out) == {"exact_match": 50.0, "f1": pytest.approx(75.0)}

    (tmp_path / "predictions.json").write_text(json.dumps({qas[0]["id"]: 3}))
    assert main(["evaluate-squad", str(data), str(tmp_path / "predictions.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"bertfit: error: {tmp_path / 'predictions.json'}: must be a JSON object mapping question ids " \
                  f"to answer strings\n"


def test_span_loss_is_transformers_question_answering_loss_and_ignores_padding(tiny_model, real_batch, tmp_path):
    model, tokenizer = load_pretrained(tiny_model, head="qa")
    folder = save_pretrained(model, tokenizer, tmp_path / "qa")
    theirs = transformers.AutoModelForQuestionAnswering.from_pretrained(str(folder)).eval()
    model.eval()
    input_ids, token_type_ids, mask = real_batch
    starts, ends = torch.tensor([1, 3, 1, 2]), torch.tensor([2, 5, 1, 9])
    lengths = mask.sum(1)
    with torch.no_grad():
        total = span_loss(model, {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": mask,
                                  "start_positions": starts, "end_positions": ends})
        for i, length in enumerate(lengths.tolist()):  # each example unpadded, against transformers' mean loss
            one = {k: v[i : i + 1, :length] for k, v in (("input_ids", input_ids), ("token_type_ids", token_type_ids),
                                                         ("attention_mask", mask))}
            expected = theirs(**{**one, "attention_mask": one["attention_mask"].long()},
                              start_positions=starts[i : i + 1], end_positions=ends[i : i + 1]).loss
            alone = span_loss(model, {**one, "start_positions": starts[i : i + 1], "end_positions": ends[i : i + 1]})
            assert alone.item() == pytest.approx(expected.item(), rel=1e-5)
            total -= alone
    assert abs(total.item()) < 1e-4  # the padded batch's loss is the sum of the unpadded examples' losses


def test_fine_tuning_the_embedded_model_briefly_learns_to_find_answers(tmp_path, monkeypatch):
    """16 steps of 8 questions: far above what pointing at spans by chance gives (EM about 2 on these contexts)."""
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))
    options = SquadOptions(version="1.1", train_file=str(people_file(tmp_path / "train.json", 128, seed=1)),
                           eval_file=str(people_file(tmp_path / "dev.json", 40, seed=2)),
                           output_dir=str(tmp_path / "run"), max_seq_length=48, doc_stride=16, max_query_length=16,
                           quiet=True)
    results = finetune_squad(options, TrainSettings(epochs=1, lr=3e-4, batch_size=8, precision="fp32"))
    assert results["steps"] == 16
    assert results["metrics"]["exact"] >= 40 and results["metrics"]["f1"] >= 45


def test_a_squad_run_writes_a_model_card_with_the_scores_of_results_json(squad_run):
    from cards import check_model_card

    metadata = check_model_card(squad_run.dir, transformers.AutoModelForQuestionAnswering)
    assert metadata["datasets"] == ["rajpurkar/squad_v2"] and metadata["pipeline_tag"] == "question-answering"
