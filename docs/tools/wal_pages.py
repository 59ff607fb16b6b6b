#!/usr/bin/env python3
"""Pages that each group commit writes to the WAL, by B-tree.

A commit writes every page it changed to the WAL again, whole. Under small
groups this is most of the writer's fixed cost per commit (docs/store.md,
"What one commit writes"). This script measures it for the current schema:

1. it starts mailpulse on a fresh store and sends it load with the bench's
   own generator (closed loop, or open loop with --rate; single events, or
   batches with --batch);
2. it reads the commit count from /metrics, then kills the server with
   SIGKILL, which leaves the WAL as it is (a clean stop checkpoints it
   away);
3. it reads the WAL's frame headers. Each frame is one page. A frame with
   a nonzero "database size" field ends a commit. Only the frames of the
   WAL's current generation (the header's salts) are read: the WAL
   restarts under load, so they are the last stretch of the run;
4. it names each page's B-tree and page type (leaf, interior, overflow)
   with SQLite's dbstat.

It prints frames per commit, split by B-tree and page type.

    cargo leptos build --release && cargo build --release -p mailpulse --bin mailpulse-bench
    python3 docs/tools/wal_pages.py --connections 256              # single events at the peak
    python3 docs/tools/wal_pages.py --batch 100 --rate 1500        # batches, about half the peak

Pages reused after retention could be named after their new owner; on a
fresh store there are none. Used for docs/store.md.
"""

import argparse
import collections
import os
import re
import signal
import sqlite3
import struct
import tempfile
import urllib.request

import toolkit


def commits(addr):
    text = urllib.request.urlopen(f"http://{addr}/metrics").read().decode()
    return int(re.search(r"^mailpulse_store_commit_seconds_count (\d+)", text, re.M).group(1))


def wal_frames(wal):
    """[(page number, ends a commit)] of the WAL's current generation, up
    to its last commit."""
    if not os.path.exists(wal):
        raise SystemExit(f"no WAL at {wal}: nothing was committed, or the server stopped cleanly")
    with open(wal, "rb") as f:
        header = f.read(32)
        if len(header) < 32:
            return [], 0
        page_size = struct.unpack(">I", header[8:12])[0]
        salts = header[16:24]
        frames = []
        while True:
            h = f.read(24)
            if len(h) < 24 or h[8:16] != salts:
                break
            page, size_after = struct.unpack(">II", h[:8])
            frames.append((page, size_after != 0))
            f.seek(page_size, os.SEEK_CUR)
    last = max((i for i, (_, end) in enumerate(frames) if end), default=-1)
    return frames[:last + 1], page_size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailpulse", default="target/release/mailpulse")
    ap.add_argument("--bench", default="target/release/mailpulse-bench")
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=float, help="requests/s (open loop); closed loop without")
    ap.add_argument("--batch", type=int, default=1, help="events per POST")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="wal-pages-") as d:
        p, addr = toolkit.start([args.mailpulse, "serve"],
                                {"MAILPULSE_ADDR": "127.0.0.1:0",
                                 "MAILPULSE_DATA_DIR": os.path.join(d, "store")},
                                os.path.join(d, "server.log"))
        try:
            out = toolkit.load(args.bench, addr, args.seconds, args.connections,
                               args.batch, args.rate)
            print(out)
            rps = toolkit.requests_per_second(out)
            n_commits = commits(addr)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        db = os.path.join(d, "store", "mailpulse.db")
        frames, page_size = wal_frames(db + "-wal")
        ends = sum(end for _, end in frames)
        if not ends:
            raise SystemExit("no commit in the WAL's current generation; run longer")
        # Opening the database replays the WAL: the frames were read first.
        conn = sqlite3.connect(db)
        owner = {pageno: (name, kind) for name, pageno, kind in
                 conn.execute("SELECT name, pageno, pagetype FROM dbstat")}
        conn.close()

    print(f"whole run: {rps * args.seconds / n_commits:.1f} requests "
          f"({rps * args.seconds * args.batch / n_commits:.0f} events) per commit, "
          f"{n_commits} commits")
    print(f"WAL's last generation: {ends} commits, {len(frames)} frames of {page_size} bytes, "
          f"{len(frames) / ends:.1f} frames per commit")
    per = collections.Counter()
    for page, _ in frames:
        # Page 1 holds the file's header (its size in pages, rewritten by
        # every commit that grows the file) and sqlite_schema's root.
        key = ("page 1 (file header)", "internal") if page == 1 else owner.get(page, ("(freed)", ""))
        per[key] += 1
    kinds = ["leaf", "internal", "overflow", ""]
    names = sorted({name for name, _ in per}, key=lambda n: -sum(per[(n, k)] for k in kinds))
    print(f"\n{'B-tree':28} {'leaf':>7} {'interior':>9} {'overflow':>9}   (pages per commit)")
    for name in names:
        if sum(per[(name, k)] for k in kinds) / ends < 0.005:
            continue
        leaf, interior, overflow = (per[(name, k)] / ends for k in ("leaf", "internal", "overflow"))
        other = per[(name, "")] / ends
        extra = f"   other {other:.2f}" if other else ""
        print(f"{name:28} {leaf:7.2f} {interior:9.2f} {overflow:9.2f}{extra}")


main()
