"""GLUE leaderboard files: a test split's predictions as the leaderboard takes them."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..files import write_atomic
from .glue import GlueTask, resolve_split, resolve_task


def write_submission(task: str | GlueTask, split: str, indices: Sequence[int], predictions: Sequence,
                     out_dir: str | Path) -> Path:
    """Write the GLUE leaderboard file (`index<TAB>prediction`, labels as GLUE spells them) and return its path."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    if split not in task.submissions:
        raise ConfigError(f"GLUE takes submissions for {task.name} {', '.join(task.submissions)} only, not {split!r}")
    if len(indices) != len(predictions):
        raise DataError(f"{len(predictions)} predictions for {len(indices)} indices")
    predictions = np.asarray(predictions)
    if predictions.ndim != 1:
        raise DataError(f"predictions must be one label id (or score) per example, not shape {predictions.shape}")
    if task.labels is None:
        values = [f"{x:.3f}" for x in np.clip(predictions.astype(np.float64), 0.0, 5.0)]
    else:
        ids = predictions.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= task.num_labels):
            raise DataError(f"{task.name} predictions must be label ids 0..{task.num_labels - 1}")
        values = [task.labels[i] for i in ids]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / task.submissions[split]
    rows = "".join(f"{int(i)}\t{v}\n" for i, v in zip(indices, values))
    return write_atomic(path, "index\tprediction\n" + rows)
