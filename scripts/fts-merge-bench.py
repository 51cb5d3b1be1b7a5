#!/usr/bin/env python3
"""How long SQLite's search-index transactions take, with FTS5's own merging or with a little merging in each.

The shape of Warbler's search queue (SearchIndexQueue): an FTS5 index with the trigram tokenizer, WAL,
synchronous=FULL, transactions of 25 rows. Prints p50 / p99 / max per transaction (docs/benchmarks.md).

    python3 scripts/fts-merge-bench.py auto          # FTS5's automerge (SQLite's default)
    python3 scripts/fts-merge-bench.py manual20      # automerge=0 and ('merge', 20) in each transaction
    TX=12000 python3 scripts/fts-merge-bench.py auto # more transactions (a larger index)
"""
import os
import random
import sqlite3
import sys
import tempfile
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "auto"
budget = int(mode[6:]) if mode.startswith("manual") else 0
with tempfile.TemporaryDirectory() as tmp:
    db = sqlite3.connect(os.path.join(tmp, "fts.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(text, content='', tokenize='trigram')")
    if budget:
        db.execute("INSERT INTO f(f, rank) VALUES('automerge', 0)")
    random.seed(1)
    words = ["".join(random.choice("abcdefghijklmnop") for _ in range(random.randint(3, 9))) for _ in range(5000)]
    times = []
    for _ in range(int(os.environ.get("TX", "2000"))):
        rows = [(" ".join(random.choice(words) for _ in range(8)),) for _ in range(25)]
        t0 = time.perf_counter()
        db.execute("BEGIN")
        db.executemany("INSERT INTO f(text) VALUES (?)", rows)
        if budget:
            db.execute("INSERT INTO f(f, rank) VALUES('merge', ?)", (budget,))
        db.execute("COMMIT")
        times.append((time.perf_counter() - t0) * 1000)
    s = sorted(times)
    pages = db.execute("SELECT count(*) FROM f_data").fetchone()[0]
    print(f"{mode}: {len(s)} transactions, p50 {s[len(s) // 2]:.2f} / p99 {s[int(len(s) * 0.99)]:.2f} / "
          f"max {s[-1]:.1f} ms, total {sum(times):.0f} ms, index rows {pages}")
