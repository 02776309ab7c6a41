#!/usr/bin/env python3
"""A replay phase's app latency minute by minute, from the pgbench logs `bench/replay.sh` keeps with KEEP=DIR.

Usage: bench/replay-minutes.py DIR PHASE [SKIP_SECONDS]

Reads DIR/appPHASE.PID[.THREAD] (pgbench's per-transaction logs: client, transaction, latency in µs, script,
epoch second, µs), prints each minute's transactions, p50 and p99 in ms, then the whole phase's p50 and p99 and the
same without its first SKIP_SECONDS (default 0): a phase that begins with hattrick's catch-up of what an earlier
phase left is told apart from its steady state this way.
"""
import os
import re
import sys


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2])
    directory, phase = sys.argv[1], sys.argv[2]
    skip = float(sys.argv[3]) if len(sys.argv) == 4 else 0.0
    rows = []  # (epoch seconds, latency ms)
    # pgbench names its logs appPHASE.PID and appPHASE.PID.THREAD; replay.sh's appPHASE.ms is not one.
    pattern = re.compile(rf"app{re.escape(phase)}\.\d+(\.\d+)?")
    paths = [os.path.join(directory, name) for name in sorted(os.listdir(directory)) if pattern.fullmatch(name)]
    if not paths:
        sys.exit(f"{directory}: no pgbench log of phase {phase} (app{phase}.*)")
    for path in paths:
        with open(path) as log:
            for number, line in enumerate(log, 1):
                fields = line.split()
                try:
                    rows.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1000))
                except (IndexError, ValueError):
                    sys.exit(f"{path}:{number}: not a pgbench log line: {line.strip()!r}")
    start = min(at for at, _ in rows)
    minutes = {}
    for at, ms in rows:
        minutes.setdefault(int((at - start) // 60), []).append(ms)
    print("minute|transactions|p50 ms|p99 ms|max ms")
    for minute in sorted(minutes):
        ms = sorted(minutes[minute])
        print(f"{minute}|{len(ms)}|{percentile(ms, 0.5):.2f}|{percentile(ms, 0.99):.2f}|{ms[-1]:.2f}")
    whole = sorted(ms for _, ms in rows)
    print(f"whole phase: {len(whole)} transactions, p50 {percentile(whole, 0.5):.2f} ms, "
          f"p99 {percentile(whole, 0.99):.2f} ms")
    if skip:
        rest = sorted(ms for at, ms in rows if at - start >= skip)
        print(f"after its first {skip:g} s: {len(rest)} transactions, p50 {percentile(rest, 0.5):.2f} ms, "
              f"p99 {percentile(rest, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
