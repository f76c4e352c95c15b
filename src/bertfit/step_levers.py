"""The levers of a CPU training step outside its matrix products, and the CPU kinds each is on for.

Each lever computes what the plain path computes, with fewer passes over memory or fewer calls:

- `dropout_add`: a block's `residual + dropout(x)` as one addcmul with the dropout's keep mask (0 or
  1 / (1 - p), drawn from the same random bits), whose backward is one multiply, where the plain path
  runs where, multiply and add forward and two ops back;
- `qkv_unbind`: queries, keys and values split off the fused projection along their own axis, so the
  backward stacks their gradients straight into the projection's layout (one copy, not a stack and a
  reshape's clone);
- `foreach_norm`: clipping's per-tensor norms in one `torch._foreach_norm` call, not one call each.

bench/profile_step.py --levers measures each on and off against the plain path in one run; a lever is
on for a CPU kind only where it won there (WINS). Each is read at
call time, so a bench or a test can flip it with `ON[name] = ...`.
"""
from __future__ import annotations

from .devices import CPU_KINDS, cpu_flags

NAMES = ("dropout_add", "qkv_unbind", "foreach_norm")

# Where each lever won, by CPU kind (docs/figures/<kind>/profile-sst2.json and profile-squad.json, "levers"); the
# kinds not measured yet keep the plain path. On avx2 qkv_unbind cut a SQuAD step's casts and copies from 107 to
# 34 ms; dropout_add and foreach_norm did not show a win beyond the run-to-run noise of that shared machine.
WINS: dict[str, tuple[str, ...]] = {"avx2": ("qkv_unbind",)}


def cpu_kind(flags: set[str]) -> str | None:
    """The most capable of devices.CPU_KINDS whose flags this CPU has (None: not even AVX2)."""
    kinds = [kind for kind, needed in CPU_KINDS.items() if needed <= flags]
    return max(kinds, key=lambda kind: len(CPU_KINDS[kind]), default=None)


def chosen(flags: set[str]) -> dict[str, bool]:
    """Each lever on or off for a CPU with these flags."""
    won = WINS.get(cpu_kind(flags) or "", ())
    return {name: name in won for name in NAMES}


ON: dict[str, bool] = chosen(cpu_flags())
