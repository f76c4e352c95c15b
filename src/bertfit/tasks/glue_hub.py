"""The Hugging Face hub copy of GLUE (`nyu-mll/glue`), read into the same Examples as the official files."""
from __future__ import annotations

from .. import hub
from ..errors import DataError
from .glue import Examples, GlueTask, resolve_split, resolve_task

HUB_SPLITS = {
    "train": "train", "dev": "validation", "test": "test",
    "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
    "test_matched": "test_matched", "test_mismatched": "test_mismatched",
}


def load_hub_split(task: str | GlueTask, split: str) -> Examples:
    """Load a split of `nyu-mll/glue` through `datasets`; any failure says to use --data-dir instead."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    example = f"GLUE/{task.folder}/{task.files[split]}"
    if reason := hub.unreachable():
        raise DataError(f"GLUE {task.name} {split}: the Hugging Face hub cannot be reached ({reason}); pass "
                        f"--data-dir with the official GLUE files (e.g. {example}); {hub.OFFLINE_HINT}")
    try:
        import datasets

        table = datasets.load_dataset("nyu-mll/glue", task.name, split=HUB_SPLITS[split])
    except Exception as e:  # offline, no cache, hub down, renamed: all mean the same thing to the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"could not load GLUE {task.name} {split} from the Hugging Face hub ({reason}); "
                        f"pass --data-dir with the official GLUE files (e.g. {example})") from None
    columns = task.hub_columns or task.text_columns
    labels = list(table["label"]) if "label" in table.column_names else None
    if labels is not None and all(label == -1 for label in labels):  # the hub marks test labels -1
        labels = None
    return Examples(
        texts_a=list(table[columns[0]]),
        texts_b=list(table[columns[1]]) if len(columns) == 2 else None,
        labels=labels,
        indices=list(table["idx"]),
        source=f"hub:nyu-mll/glue/{task.name}/{HUB_SPLITS[split]}",
        label_names=task.labels if labels is not None else None,
        num_read=len(table),
    )
