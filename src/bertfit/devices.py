"""The hardware a run uses: this process's device and place under torchrun, what rank 0 sends the
other ranks, the precision and autocast, and the CPU memory allocator."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from .errors import BertfitError, CheckpointError, ConfigError, DataError


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> torch.device:
    """Join the torchrun process group when launched by torchrun; return this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_main_process() -> bool:
    return world()[0] == 0


# A file goes from rank 0 to the others in pieces of this size, so a GPU never holds a whole checkpoint for it.
BROADCAST_BYTES = 64 << 20


def broadcast_bytes(data: bytes | None, device: torch.device) -> bytes:
    """Rank 0's `data` on every rank (the others pass None)."""
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    received = bytearray(int(size)) if data is None else None
    for start in range(0, int(size), BROADCAST_BYTES):
        end = min(start + BROADCAST_BYTES, int(size))
        piece = (torch.frombuffer(bytearray(data[start:end]), dtype=torch.uint8) if data is not None
                 else torch.empty(end - start, dtype=torch.uint8)).to(device)
        dist.broadcast(piece, src=0)
        if received is not None:
            received[start:end] = piece.cpu().numpy().tobytes()
    return data if data is not None else bytes(received)


_ERRORS = {error.__name__: error for error in (BertfitError, ConfigError, CheckpointError, DataError)}


def from_main_process(read: Callable[[], dict[str, bytes] | None], device: torch.device) -> dict[str, bytes] | None:
    """Run `read` on rank 0 alone and return its files on every rank; an error there stops every rank.

    Only rank 0 writes a run dir, and the ranks of a run on several machines may not share a file
    system, so only rank 0's view of it counts: whatever is decided from the run dir is decided there.
    """
    rank, world_size = world()
    if world_size == 1:
        return read()
    files, error, header = None, None, {}
    if rank == 0:
        try:
            files = read()
            header = {"files": None if files is None else list(files)}
        except Exception as exc:
            error = exc
            header = {"error": str(exc), "type": type(exc).__name__}
    header = json.loads(broadcast_bytes(json.dumps(header).encode() if rank == 0 else None, device))
    if "error" in header:
        if error is not None:
            raise error
        if header["type"] in _ERRORS:
            raise _ERRORS[header["type"]](header["error"])
        raise BertfitError(f"rank 0 stopped: {header['type']}: {header['error']}")
    if header["files"] is None:
        return None
    return {name: broadcast_bytes(files[name] if rank == 0 else None, device) for name in header["files"]}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """auto: bf16 where the hardware runs it fast (CPUs with AVX-512 BF16 / AMX, recent GPUs), else fp16 on GPU, else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("--precision fp16 needs a GPU; on CPU use bf16 or fp32")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16_instructions(auto_cpu_flags()) else torch.float32


PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision_name(dtype: torch.dtype) -> str:
    """The --precision name of what `resolve_precision` chose: what "auto" became, for results and messages."""
    return PRECISION_NAMES[dtype]


def cpu_has_bf16_instructions(flags: set[str]) -> bool:
    """AVX-512 BF16 or AMX: without them (AVX-512 alone: Skylake-X, Cascade Lake, Ice Lake) bf16 matmuls are
    emulated and slower than fp32."""
    return bool(flags & {"avx512_bf16", "amx_bf16"})


# The CPU kinds bertfit tells apart, by the flags that decide what "auto" means on each; the environment variable
# makes "auto" resolve as on the kind it names, whatever this CPU is, so that the suite runs every kind's
# resolution on any machine (bf16 is emulated, slowly, where the CPU lacks it: the results are the same).
CPU_KIND_VARIABLE = "BERTFIT_CPU_KIND"
CPU_KINDS = {"avx2": {"avx2"}, "avx512_bf16": {"avx2", "avx512f", "avx512_bf16"},
             "amx": {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}}


def auto_cpu_flags() -> set[str]:
    """The flags `--precision auto` decides on: those of the kind BERTFIT_CPU_KIND names, else this CPU's."""
    kind = os.environ.get(CPU_KIND_VARIABLE, "").strip()
    if not kind:
        return cpu_flags()
    if kind not in CPU_KINDS:
        raise ConfigError(f"{CPU_KIND_VARIABLE}={kind!r}: the CPU kinds are {', '.join(CPU_KINDS)}")
    return CPU_KINDS[kind]


def precision_reason(precision: str, device: torch.device) -> str:
    """Why the precision is what it is, for the line that says it: the option, and for "auto" on a CPU, the kind."""
    if precision != "auto" or device.type != "cpu":
        return f"--precision {precision}"
    simulated = os.environ.get(CPU_KIND_VARIABLE, "").strip()
    where = f"{CPU_KIND_VARIABLE}={simulated}" if simulated else (
        "this CPU runs bf16 natively" if cpu_has_bf16_instructions(cpu_flags()) else "this CPU has no native bf16")
    return f"--precision auto: {where}"


@functools.cache
def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo; none elsewhere (auto then means fp32)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return next((set(line.partition(":")[2].split()) for line in lines if line.startswith("flags")), set())


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


_allocator_tuned = False


def tune_allocator(device: torch.device) -> None:
    """On CPU, keep freed memory in the process for the next step instead of returning it to the kernel.

    glibc serves blocks above its mmap threshold (128 KiB at first, raised as such blocks are freed)
    straight from the kernel and unmaps them on free, and trims the heap top as it empties, so a
    step's activations, weight casts and gradients of a few MB keep arriving as fresh pages that are
    faulted in and zeroed one by one (bench/levers.py times an SST-2 step in an untouched process against
    one with these settings, each in fresh processes). The threshold goes to its 32 MiB maximum and trimming waits for 1 GiB of free heap. It changes where memory comes from,
    never what is computed, for the rest of the process: freed memory stays with it for reuse (up
    to 1 GiB) rather than going back to the system. Without glibc's mallopt it does nothing.
    """
    global _allocator_tuned
    if _allocator_tuned or device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


def keeps_global_rng(function: Callable) -> Callable:
    """Run `function` with torch's global generators (CPU and every CUDA device) restored afterwards.

    Training seeds torch's generator (a new head's weights, every step's dropout), which is its own
    business: a caller's random stream goes on after a library call as if the call had not been made.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            return function(*args, **kwargs)

    return wrapper
