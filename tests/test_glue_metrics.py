"""GLUE metrics against scikit-learn and SciPy, degenerate inputs, and the GLUE average."""
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bertfit.errors import ConfigError, DataError
from bertfit.glue_metrics import glue_average, glue_metrics, main_metric

rng = np.random.default_rng(0)


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli", "mnli", "MNLI-mm"])
def test_accuracy_tasks_match_sklearn(task):
    references, predictions = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert glue_metrics(task, predictions, references) == {"accuracy": accuracy_score(references, predictions)}


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_tasks_report_f1_then_accuracy(task):
    references, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    metrics = glue_metrics(task, predictions, references)
    assert list(metrics) == ["f1", "accuracy"]
    assert metrics["f1"] == pytest.approx(f1_score(references, predictions))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, predictions))


def test_cola_and_ax_use_matthews_correlation():
    references, predictions = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    expected = matthews_corrcoef(references, predictions)
    assert glue_metrics("CoLA", predictions, references) == {"matthews_correlation": pytest.approx(expected)}
    references, predictions = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert glue_metrics("ax", predictions, references)["matthews_correlation"] == pytest.approx(
        matthews_corrcoef(references, predictions))


def test_stsb_uses_pearson_and_spearman():
    references = rng.uniform(0, 5, 150)
    predictions = references + rng.normal(0, 1.5, 150)
    metrics = glue_metrics("STS-B", predictions, references)
    assert list(metrics) == ["pearson", "spearman"]
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(predictions, references)[0])
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(predictions, references)[0])


def test_constant_predictions_score_zero_without_nan():
    references = np.array([0, 1, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn may warn about the constant input; the value is what counts
        assert glue_metrics("cola", np.zeros(5, dtype=int), references) == {"matthews_correlation": 0.0}
        assert glue_metrics("mrpc", np.zeros(5, dtype=int), references)["f1"] == 0.0
    assert glue_metrics("stsb", np.full(5, 2.5), [1.0, 2.0, 3.0, 4.0, 5.0]) == {"pearson": 0.0, "spearman": 0.0}
    assert glue_metrics("stsb", [3.0], [1.0]) == {"pearson": 0.0, "spearman": 0.0}


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(DataError, match="2 predictions for 3 references"):
        glue_metrics("sst2", [0, 1], [0, 1, 1])
    with pytest.raises(DataError, match="no predictions"):
        glue_metrics("sst2", [], [])


def test_main_metric_is_listed_first():
    assert [main_metric(t) for t in ("cola", "sst2", "mrpc", "STS-B", "qqp", "mnli")] == [
        "matthews_correlation", "accuracy", "f1", "pearson", "f1", "accuracy"]


def test_glue_average_by_hand():
    results = {
        "cola": {"matthews_correlation": 60.0},
        "sst2": {"accuracy": 93.0, "loss": 0.2},  # extra numbers are not metrics and do not count
        "mrpc": {"f1": 90.0, "accuracy": 86.0},  # task score 88
        "STS-B": {"pearson": 88.0, "spearman": 87.0},  # 87.5
        "MNLI-m": {"accuracy": 84.0},
        "MNLI-mm": {"accuracy": 83.0},  # one task: 83.5
        "ax": {"matthews_correlation": 40.0},  # the diagnostic set is not part of the score
    }
    # (60 + 93 + 88 + 87.5 + 83.5) / 5
    assert glue_average(results) == pytest.approx(82.4)


def test_glue_average_refuses_missing_metrics():
    with pytest.raises(ConfigError, match="mrpc: no accuracy"):
        glue_average({"mrpc": {"f1": 0.9}})
    with pytest.raises(ConfigError, match="no GLUE task results"):
        glue_average({"ax": {"matthews_correlation": 0.4}})
