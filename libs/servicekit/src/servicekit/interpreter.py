"""Process-wide interpreter settings shared by the stream services."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import platform

log = logging.getLogger(__name__)

# A young-generation pass every this many allocations instead of CPython's 700.
GC_YOUNG_THRESHOLD = 100_000
# glibc's heap keeps this much freed memory at its top instead of handing it back to the kernel,
# and serves allocations up to this size itself instead of mapping each one: two of the
# largest Kafka fetch responses the services ask for (16 MiB). 32 MiB is also the most glibc's
# own adaptive mapping threshold ever rises to on 64-bit.
MALLOC_KEEP_BYTES = 32 * 1024 * 1024
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # glibc's <malloc.h>
_OPERATOR_SETTINGS = ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def tune_gc() -> None:
    """Start-up objects (models, lexicons, schemas) leave the collector's view, and a
    young-generation pass runs every GC_YOUNG_THRESHOLD allocations: a stream allocates a great
    deal per record and frees nearly all of it by reference counting, so frequent passes only
    cost CPU (cdc_processor: ~5 % less per review; s3_archiver: 7.3-7.5 us per record instead
    of 8.1-9.8 on its bench backlog). Call once, after start-up imports."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def tune_malloc(keep_bytes: int = MALLOC_KEEP_BYTES) -> bool:
    """Let glibc's heap keep and reuse up to `keep_bytes` of freed memory.

    aiokafka reads every fetch response into an asyncio StreamReader's bytearray, grown chunk
    by chunk and then copied out: megabytes per poll. With glibc's defaults that memory goes
    back to the kernel once freed and every page of the next response faults in again (about
    two faults per 4 KiB page: ~15 ms of CPU per 12 MiB response on these machines). Kept, the
    next response reuses it (~1 ms): a bare consume loop 2.4 -> 1.9 us per record, the
    archiver ~7.1 -> ~6.8. Both settings are needed:
    a top pad alone fixes the mapping threshold at its 128 KiB default (mallopt turns glibc's
    adaptive threshold off), so every large buffer would be mapped and faulted in afresh.
    The cost is up to `keep_bytes` more resident memory. Skipped (False) where the C library
    is not glibc, or where the operator tuned glibc's allocator in the environment."""
    if tuned := [name for name in _OPERATOR_SETTINGS if name in os.environ]:
        log.info("%s set: glibc's allocator is left as configured", ", ".join(tuned))
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    keep = ctypes.c_int(keep_bytes)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, keep)) and bool(libc.mallopt(_M_TOP_PAD, keep))
