"""release_free_memory: glibc hands freed heap pages back to the OS."""

from __future__ import annotations

import ctypes
from pathlib import Path

from telephony.process.memory import release_free_memory


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_heap_goes_back_to_the_os() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # 40 MB in blocks below the mmap threshold, so they live in the heap, touched, then
    # freed except the last one: it pins the heap's top, so only a trim can give the rest back.
    blocks = [libc.malloc(64 * 1024) for _ in range(640)]
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for b in blocks[:-1]:
        libc.free(b)
    held = rss_kb()
    assert release_free_memory()
    released = held - rss_kb()
    libc.free(blocks[-1])
    assert released > 30 * 1024, f"only {released} kB released"
