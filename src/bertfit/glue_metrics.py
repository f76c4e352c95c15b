"""GLUE's metrics as pure functions on predictions and references, computed with scikit-learn and SciPy."""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .errors import ConfigError, DataError
from .tasks.glue import resolve_task


def accuracy(predictions, references) -> float:
    return float(accuracy_score(references, predictions))


def f1(predictions, references) -> float:
    """F1 of the positive class (label 1), as GLUE scores MRPC and QQP; 0.0 when nothing is predicted positive."""
    return float(f1_score(references, predictions, zero_division=0.0))


def matthews_correlation(predictions, references) -> float:
    """Matthews correlation (multi-class for AX); sklearn returns 0.0 when either side is constant."""
    return float(matthews_corrcoef(references, predictions))


def pearson(predictions, references) -> float:
    return _correlation(stats.pearsonr, predictions, references)


def spearman(predictions, references) -> float:
    return _correlation(stats.spearmanr, predictions, references)


def _correlation(correlate, predictions, references) -> float:
    predictions = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    # Correlation with a constant is undefined (SciPy warns and gives NaN); report 0.0, as sklearn
    # does for Matthews, so an untrained model that predicts one value scores "no correlation".
    if len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0
    return float(correlate(predictions, references)[0])


METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def glue_metrics(task_name: str, predictions, references) -> dict[str, float]:
    """The task's GLUE metrics, main one first, as fractions (0..1, correlations -1..1).

    `predictions` are label ids, or scores for STS-B.
    """
    task = resolve_task(task_name)
    predictions, references = np.asarray(predictions), np.asarray(references)
    if len(predictions) != len(references):
        raise DataError(f"{task.name}: {len(predictions)} predictions for {len(references)} references")
    if len(references) == 0:
        raise DataError(f"{task.name}: no predictions to score")
    return {name: METRICS[name](predictions, references) for name in task.metrics}


def main_metric(task_name: str) -> str:
    return resolve_task(task_name).metrics[0]


def glue_average(metrics_by_task: dict[str, dict[str, float]]) -> float:
    """The GLUE score: average each task's metrics, then average over tasks, in the scale given (0..1 or 0..100).

    Keys are task names in any spelling `resolve_task` takes; MNLI's matched and mismatched results
    ("mnli-m", "mnli-mm") both count as MNLI's metrics, so MNLI is one task. AX is left out, as the
    leaderboard leaves the diagnostic set out of the score.
    """
    values_by_task: dict[str, list[float]] = {}
    for key, metrics in metrics_by_task.items():
        task = resolve_task(key)
        if task.name == "ax":
            continue
        missing = [name for name in task.metrics if name not in metrics]
        if missing:
            raise ConfigError(f"{key}: no {', '.join(missing)} to average (have {', '.join(metrics) or 'nothing'})")
        values_by_task.setdefault(task.name, []).extend(float(metrics[name]) for name in task.metrics)
    if not values_by_task:
        raise ConfigError("no GLUE task results to average")
    return float(np.mean([np.mean(values) for values in values_by_task.values()]))
