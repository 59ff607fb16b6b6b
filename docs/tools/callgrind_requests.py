#!/usr/bin/env python3
"""Instructions per request, mailpulse against the bare axum ceiling, by
thread and by function, counted by callgrind.

Timing runs on this class of machine move by ±10 % between runs, so a
change worth 1-2 µs per request cannot be seen in them. Instruction
counts hardly move: this runs both servers under callgrind (each thread
on its own file), sends each the same single-event load with the bench's
own generator, and prints

- the instructions per request of each server thread, and
- the functions whose own instructions per request on the tokio workers
  differ most between the two servers.

    cargo leptos build --release && cargo build --release -p mailpulse --bin mailpulse-bench
    python3 docs/tools/callgrind_requests.py [--seconds 20] [--connections 64]

Instructions are not time (cache misses, the kernel's share and waiting
are not in them), and under callgrind every thread of a process runs on
one core, so group commits are smaller than in a real run and the
writer's per-request figure is inflated. Compare builds with it, not
with the timing runs. Used for docs/store.md, "Instructions per request".
"""

import argparse
import collections
import glob
import re
import signal
import subprocess
import tempfile
import time

import toolkit


def start(cmd, env, out_file, log):
    """`cmd` under callgrind, one output file per thread."""
    full = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={out_file}"] + cmd
    return toolkit.start(full, env, log)


def load(bench, addr, seconds, connections):
    """Requests answered in one closed-loop run."""
    summary = toolkit.load(bench, addr, seconds, connections)
    return int(toolkit.requests_per_second(summary)) * seconds


def functions(path):
    """Own instructions per function of one thread's file."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    d = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(?:\S*?:)?(.*?) \[", line)
        if m:
            d[m.group(2)] += int(m.group(1).replace(",", ""))
    return d


def threads(prefix):
    """(label, total instructions, file) of each thread's file."""
    rows = []
    for path in sorted(glob.glob(prefix + "-*")):
        text = open(path, errors="replace").read()
        total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        # The first file is the main thread (start-up, and it names
        # every thread it spawns); the others by what they run.
        label = "main" if path.endswith("-01") else "other"
        for pattern, name in (("multi_thread::worker::run", "tokio worker"),
                              ("store::writer", "store writer"), ("store::sync", "store sync"),
                              ("checkpoint", "checkpointer")):
            if label == "other" and pattern in text:
                label = name
                break
        rows.append((label, total, path))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailpulse", default="target/release/mailpulse")
    ap.add_argument("--bench", default="target/release/mailpulse-bench")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="callgrind-")
    ceiling, caddr = start([args.bench, "ceiling-server"], {}, f"{work}/ceiling.out",
                           f"{work}/ceiling.log")
    mailpulse, maddr = start([args.mailpulse, "serve"],
                             {"MAILPULSE_ADDR": "127.0.0.1:0", "MAILPULSE_DATA_DIR": f"{work}/data"},
                             f"{work}/mailpulse.out", f"{work}/mailpulse.log")
    time.sleep(5)  # mailpulse rebuilds its (empty) live state first
    requests = {"ceiling": load(args.bench, caddr, args.seconds, args.connections),
                "mailpulse": load(args.bench, maddr, args.seconds, args.connections)}
    # SIGTERM, not SIGINT: a shell running this in the background
    # starts it with SIGINT ignored, and the ceiling would never stop.
    ceiling.send_signal(signal.SIGTERM)
    mailpulse.send_signal(signal.SIGTERM)
    ceiling.wait(60)
    mailpulse.wait(60)

    workers = {}
    for name in ("ceiling", "mailpulse"):
        n = requests[name]
        print(f"{name}: {n} requests")
        by_label = collections.Counter()
        for label, total, _ in threads(f"{work}/{name}.out"):
            by_label[label] += total
        for label, total in by_label.most_common():
            print(f"  {label:13} {total / n:9.0f} instructions per request")
        workers[name] = collections.Counter()
        for label, _, path in threads(f"{work}/{name}.out"):
            if label == "tokio worker":
                workers[name].update(functions(path))
    nm, nc = requests["mailpulse"], requests["ceiling"]
    print("\ntokio workers, own instructions per request: difference, mailpulse, ceiling")
    names = set(workers["mailpulse"]) | set(workers["ceiling"])
    per = {f: (workers["mailpulse"][f] / nm, workers["ceiling"][f] / nc) for f in names}
    for f in sorted(names, key=lambda f: per[f][1] - per[f][0])[: args.top]:
        m, c = per[f]
        print(f"{m - c:8.0f} {m:8.0f} {c:8.0f}  {f[:110]}")
    print(f"\ncallgrind files in {work}")


main()
