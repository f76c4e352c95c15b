"""The bad records of one file: with --skip-bad-examples skipped and counted; without, every one of them (up to
MAX_NAMED) named in one error once the file is read, so that a user fixes them in one go, not one run per row."""
from __future__ import annotations

from ..errors import DataError

MAX_NAMED = 20  # bad records named in one error or kept as skip reasons; the rest are counted
SKIP_HINT = "fix them, or skip them, counted, with --skip-bad-examples"


class BadRows:
    """Collects (where, why) for each bad record of `source`; `check()` raises the one error, unless `skip`."""

    def __init__(self, source, skip: bool = False, what: str = "rows", hint: str | None = SKIP_HINT,
                 separator: str = ", "):
        """`what`: the records' name, plural; `separator`: between the file and the one bad record's place
        (`FILE, line 3: why`; SQuAD's `FILE: question 'q1' (article 't'): why`)."""
        self.source, self.skip, self.what, self.hint, self.separator = str(source), skip, what, hint, separator
        self.count = 0
        self.reasons: list[str] = []  # the first MAX_NAMED, "line N: why"

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.reasons) < MAX_NAMED:
            self.reasons.append(f"{where}: {why}")

    def failing(self) -> bool:
        """The read will end in an error: a reader stops handing on records and only looks for more bad ones."""
        return self.count > 0 and not self.skip

    def check(self) -> None:
        """Raise the DataError naming every bad record (the first MAX_NAMED, then how many more), unless skipping."""
        if self.failing():
            raise DataError(self.message())

    def message(self) -> str:
        if self.count == 1:
            return f"{self.source}{self.separator}{self.reasons[0]}"
        more = f"; and {self.count - len(self.reasons)} more" if self.count > len(self.reasons) else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.source}: {self.count} bad {self.what}: {'; '.join(self.reasons)}{more}{hint}"
