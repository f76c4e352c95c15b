"""The hardware a run uses: this process's device and place under torchrun, the precision and
autocast, and the CPU memory allocator."""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import torch
import torch.distributed as dist

from .errors import ConfigError


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


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


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
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if "AVX512" in capability or "AMX" in capability else torch.float32


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
    faulted in and zeroed one by one: with glibc's starting thresholds a 32-sentence SST-2 step on CPU
    took 136-158 ms against 75 ms with these (bench/levers.py, alternated in one process). The threshold goes to its
    32 MiB maximum and trimming waits for 1 GiB of free heap. It changes where memory comes from,
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
