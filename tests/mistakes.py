"""The harness of the mistakes matrix (plain helpers, not tests): a command given an ordinary mistake must
stop with a non-zero exit and one line naming the problem, no traceback, and change no file that was there.

    message = refused(["export", str(run), "--output", str(folder)], watch=[run, folder], capsys=capsys)
    assert "onnx.json" in message

Each case also carries `@pytest.mark.timeout(...)`, so a command that hangs fails instead of stalling CI.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bertfit.cli import main


def tree_digest(*roots: str | os.PathLike) -> dict[str, str]:
    """Every file and folder below `roots` (the roots included) with its content's SHA-256 ('dir' for a folder,
    'absent' for a root that does not exist)."""
    digest = {}
    for root in map(Path, roots):
        if not root.exists():
            digest[str(root)] = "absent"
            continue
        if root.is_file():
            digest[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        digest[str(root)] = "dir"
        for path in sorted(root.rglob("*")):
            digest[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def refused(argv: list[str], watch: list, capsys, code: int = 2) -> str:
    """Run `bertfit ARGV` in this process; assert it exits with `code` (argparse's and bertfit's own: 2), prints
    one line on stderr and no traceback, and leaves every file below `watch` as it was. Returns the line."""
    before = tree_digest(*watch)
    capsys.readouterr()
    try:
        returned = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refuses through sys.exit
        returned = exc.code
    err = capsys.readouterr().err
    assert returned == code, f"bertfit {' '.join(map(str, argv))} exited {returned}, not {code}: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    problem = [line for line in lines if "error:" in line]
    assert len(problem) == 1, f"not one error line: {err}"
    after = tree_digest(*watch)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"bertfit {' '.join(map(str, argv))} changed or removed: {changed}"
    return problem[0]
