#!/usr/bin/env python3
"""How recording interactions keeps up as they accumulate: one fresh ``--no-models`` server per
binary given (pinned to CPU 0, this client to CPU 1), 1,000 items, then 12 chunks of 20,000
keyed interactions (500 shoppers) through ``Client.record_interactions``; prints events/s per
chunk. Every event carries a new idempotency key, so each costs the server a point read that
misses — what a store without bloom filters pays for in every file it keeps.

    clients/python/.venv/bin/python clients/python/bench_record.py BINARY [BINARY ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmsearch
from bench import items, start_server


def run(binary: Path) -> list[float]:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((1000, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mmsearch-bench-") as tmp:
        proc, addr = start_server(binary, Path(tmp), 384, "0")
        try:
            with mmsearch.Client(addr) as c:
                rows = items("p", v)
                c.upsert(rows, batch_size=256)
                ids = [r["id"] for r in rows]
                for chunk in range(12):
                    events = [
                        mmsearch.Interaction(f"u{i % 500}", ids[i % len(ids)], "view",
                                             timestamp_ms=1_700_000_000_000 + chunk * 20_000 + i, idempotency_key=f"k{chunk}-{i}")
                        for i in range(20_000)
                    ]
                    started = time.perf_counter()
                    result = c.record_interactions(events, batch_size=2000)
                    rates.append(len(events) / (time.perf_counter() - started))
                    assert result.accepted == len(events), result.rejected[:3]
        finally:
            proc.terminate()
            proc.wait(30)
    return rates


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.sched_setaffinity(0, {1})
    print(f"load average {os.getloadavg()[0]:.2f}")
    for arg in sys.argv[1:]:
        rates = run(Path(arg))
        first, last = sorted(rates[:3])[1], sorted(rates[-3:])[1]
        print(f"{arg}: {' '.join(f'{r / 1000:.0f}k' for r in rates)} events/s; median of the first 3 chunks {first / 1000:.0f}k, of the last 3 {last / 1000:.0f}k")


if __name__ == "__main__":
    main()
