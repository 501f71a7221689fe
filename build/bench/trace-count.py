"""Counts a QEMU `-d exec,nochain,in_asm` trace as it streams (stdin): for each translation
block's start address, the instructions it ran (executions x the block's length). Prints
`<pc hex> <instructions>` lines. Used by exit-profile.sh."""
import collections
import sys

size = {}
runs = collections.Counter()
pending = False
cur = None
for line in sys.stdin.buffer:
    if line.startswith(b"Trace "):
        # Trace 0: 0xhost [cpu/pc/flags/cflags] name
        try:
            runs[line.split(b"[", 1)[1].split(b"/", 2)[1]] += 1
        except IndexError:
            pass
        continue
    if line.startswith(b"IN:"):
        pending = True
        cur = None
        continue
    if line.startswith(b"0x") and b":" in line[:20]:
        pc = line.split(b":", 1)[0][2:]
        if pending:
            cur = int(pc, 16)
            size[cur] = 0
            pending = False
        if cur is not None:
            size[cur] += 1
        continue
    if not line.strip():
        cur = None
for pc, n in runs.items():
    p = int(pc, 16)
    print(f"{p:x} {n * size.get(p, 0)}")
