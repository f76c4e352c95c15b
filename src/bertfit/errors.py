"""bertfit's own exceptions: raised where a problem is found, printed once by the CLI."""


class BertfitError(Exception):
    """Base class: a problem the user can act on; the CLI prints it without a traceback."""


class CheckpointError(BertfitError):
    """A model or tokenizer file is missing, malformed or does not fit the model."""


class DataError(BertfitError):
    """An input data file is missing or malformed; the message names the file and line or record."""


class ConfigError(BertfitError):
    """Settings that cannot work, or that contradict each other."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what rerunning the command will do (resume, or start again)."""


def require_examples(kept: int, source: str, what: str, read: int, skipped: int) -> None:
    """Refuse an empty training or evaluation set before any work, naming the file and what was read and skipped.

    `what`: the set's purpose, e.g. "questions to train on", "examples to evaluate on"."""
    if not kept:
        raise DataError(f"{source}: no {what} ({read} read, {skipped} skipped as bad)")
