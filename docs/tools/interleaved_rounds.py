#!/usr/bin/env python3
"""Interleaved closed-loop rounds: the bare axum ceiling against one or more
mailpulse builds or settings, with the bench's own generator.

This machine's speed moves by ±10 % from minute to minute, so one run of
each build says little. This starts the ceiling and every variant once
(each variant its own process and store), then runs them in turn, round
after round (every other round in reverse order), and prints per run and
as medians:

- requests/s (events/s with --batch);
- the server's CPU per request, user and system apart (µs);
- the generator's CPU per request (µs);
- how busy the machine's cores were;
- at the end, each server's CPU per request by thread (the tokio workers,
  the store's writer, sync and checkpointer threads) and the machine's
  idle CPU per request, medians;
- for each variant after the first, the median of its per-round ratios to
  the first variant (requests/s and server CPU) and how many rounds it won.
  Ratios taken within a round cancel most of the machine's drift.

A variant is NAME=BINDIR or NAME=BINDIR:KEY=VALUE,KEY=VALUE (environment
for that server, e.g. a `MAILPULSE_*` setting, or TOKIO_WORKER_THREADS;
CONNECTIONS=N runs that variant over N connections instead of
--connections). --ceiling-connections may be given more than once: the
one ceiling server then runs at each count in every round, and the
ratios compare with the first count:

    cargo leptos build --release && cargo build --release -p mailpulse --bin mailpulse-bench
    python3 docs/tools/interleaved_rounds.py --rounds 9 \\
        --variant before=/tmp/old --variant after=target/release

Used for docs/store.md (the timing rounds of each session's changes).
"""

import argparse
import collections
import os
import re
import resource
import shutil
import statistics
import tempfile
import time

import toolkit

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    """(user, system) seconds of a process so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) / TICK, int(f[12]) / TICK


def by_thread(pid, total):
    """{thread name: user + system seconds} of a process's live threads
    so far ("other" gets what is left of `total`, the process's own: other
    names, and threads that have ended)."""
    got = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = open(f"/proc/{pid}/task/{tid}/stat").read()
        except FileNotFoundError:  # ended meanwhile
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        seconds = (int(f[11]) + int(f[12])) / TICK
        got[name if name in THREADS else "other"] += seconds
    got["other"] += total - sum(got.values())
    return got


# The server's threads by name, in the order they are printed.
THREADS = ["tokio-rt-worker", "store-writer", "store-sync", "store-checkpoin"]


def idle():
    f = open("/proc/stat").readline().split()
    return (int(f[4]) + int(f[5])) / TICK


def load(bench, addr, seconds, connections, batch):
    """(requests/s, failed, generator CPU seconds) of one closed-loop run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = toolkit.load(bench, addr, seconds, connections, batch)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    failed = int(re.search(r"failed (\d+)", summary).group(1))
    return toolkit.requests_per_second(summary), failed, gen


def variant(spec):
    name, rest = spec.split("=", 1)
    bindir, _, envs = rest.partition(":")
    env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
    connections = env.pop("CONNECTIONS", None)
    return name, bindir, env, connections and int(connections)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, type=variant)
    ap.add_argument("--bench", default="target/release/mailpulse-bench")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--ceiling-connections", type=int, action="append")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1, help="events per POST (1: single events)")
    args = ap.parse_args()
    ceilings = args.ceiling_connections or [64]

    work = tempfile.mkdtemp(prefix="rounds-")
    ceiling_p, ceiling_addr = toolkit.start([args.bench, "ceiling-server"], {}, f"{work}/ceiling.log")
    servers = [("ceiling" if i == 0 else f"ceiling-{c}", ceiling_p, ceiling_addr, c)
               for i, c in enumerate(ceilings)]
    try:
        for i, (name, bindir, env, conns) in enumerate(args.variant):
            p, addr = toolkit.start([f"{bindir}/mailpulse", "serve"],
                                    {"MAILPULSE_ADDR": "127.0.0.1:0",
                                     "MAILPULSE_DATA_DIR": f"{work}/store-{i}", **env},
                                    f"{work}/variant-{i}.log")
            servers.append((name, p, addr, conns or args.connections))
        time.sleep(1)
        for name, _, addr, conns in servers:  # warm-up, not counted
            load(args.bench, addr, 2, conns, 1 if name.startswith("ceiling") else args.batch)
        runs = {name: [] for name, *_ in servers}
        threads = {name: [] for name, *_ in servers}
        k = len(ceilings)
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else servers[:k] + servers[k:][::-1]
            for name, p, addr, conns in order:
                batch = 1 if name.startswith("ceiling") else args.batch
                (u0, s0), i0, t0 = cpu(p.pid), idle(), time.time()
                th0 = by_thread(p.pid, u0 + s0)
                rps, failed, gen = load(args.bench, addr, args.seconds, conns, batch)
                (u1, s1), i1, t1 = cpu(p.pid), idle(), time.time()
                th1 = by_thread(p.pid, u1 + s1)
                n = rps * args.seconds
                busy = 1 - (i1 - i0) / (os.cpu_count() * (t1 - t0))
                run = (rps * batch, 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n, 1e6 * gen / n, busy)
                runs[name].append(run)
                threads[name].append({**{k: 1e6 * (th1[k] - th0[k]) / n for k in THREADS + ["other"]},
                                      "machine idle": 1e6 * (i1 - i0) / n})
                print(f"round {r + 1} {name:12} {run[0]:9.0f}/s failed {failed} server "
                      f"{run[1]:5.1f} + {run[2]:5.1f} µs (user + system), generator {run[3]:5.1f} µs, "
                      f"cores {100 * busy:3.0f} % busy", flush=True)
    finally:
        for p in {id(p): p for _, p, _, _ in servers}.values():
            p.terminate()
            p.wait(60)
        shutil.rmtree(work, ignore_errors=True)

    unit = "events/s" if args.batch > 1 else "requests/s"
    print(f"\nmedians over {args.rounds} rounds ({unit}; CPU per request):")
    ceiling = statistics.median(x[0] for x in runs["ceiling"])
    for name, xs in runs.items():
        med = [statistics.median(x[i] for x in xs) for i in range(5)]
        ratio = "" if name == "ceiling" or args.batch > 1 else f", {100 * med[0] / ceiling:.1f} % of the ceiling"
        print(f"{name:12} {med[0]:9.0f} (runs {', '.join('%.0f' % x[0] for x in xs)}), server "
              f"{med[1]:.1f} + {med[2]:.1f} µs, generator {med[3]:.1f} µs, cores {100 * med[4]:.0f} % busy{ratio}")
    per = "event" if args.batch > 1 else "request"
    print(f"\nCPU per {per} by thread (µs, user + system; the machine's idle CPU too), medians:")
    for name, xs in threads.items():
        print(f"{name:12} " + ", ".join(f"{k} {statistics.median(x[k] for x in xs):.2f}"
                                        for k in xs[0] if any(x[k] >= 0.005 for x in xs)))
    first = args.variant[0][0]
    for name, *_ in args.variant[1:]:
        rate = [v[0] / b[0] for v, b in zip(runs[name], runs[first])]
        server = [(v[1] + v[2]) / (b[1] + b[2]) for v, b in zip(runs[name], runs[first])]
        print(f"{name} against {first}, per round: {unit} × {statistics.median(rate):.3f} "
              f"(higher in {sum(x > 1 for x in rate)} of {len(rate)}), server CPU per request × "
              f"{statistics.median(server):.3f}")


main()
