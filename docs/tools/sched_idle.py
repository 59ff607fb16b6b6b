#!/usr/bin/env python3
"""Where a loaded machine's idle CPU time goes, from `perf sched record`.

A closed-loop run should keep every core busy; when it does not, this
tells whether the cores idled together (everyone waiting for I/O) or one
idled while the other ran a single thread (a serial stage or a burst that
one thread works through alone), and which thread that was.

    perf sched record -o sched.data -- sleep 2      # while the load runs
    perf script -i sched.data -F cpu,time,event,trace > sched.txt
    python3 docs/tools/sched_idle.py sched.txt

Used for docs/store.md, "Idle cores under single events".
"""

import collections
import re
import sys

SWITCH = re.compile(
    r"\s*\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+)"
    r".*?==> next_comm=(.*?) next_pid=(\d+)"
)


def bucket(seconds):
    for bound, name in ((20e-6, "< 20 us"), (100e-6, "< 100 us"), (500e-6, "< 0.5 ms"), (2e-3, "< 2 ms")):
        if seconds < bound:
            return name
    return ">= 2 ms"


def main(path):
    names, switches = {}, []
    with open(path) as f:
        for line in f:
            m = SWITCH.match(line)
            if not m:
                continue
            cpu, t, prev_comm, prev_pid, next_comm, next_pid = m.groups()
            names[prev_pid], names[next_pid] = prev_comm, next_comm
            switches.append((float(t), int(cpu), next_pid))
    if not switches:
        sys.exit("no sched_switch events in " + path)
    switches.sort()
    cpus = sorted({c for _, c, _ in switches})
    running = {}  # cpu -> pid now on it ("0" = idle)
    idle_since = {}
    lengths = collections.Counter()
    all_idle = 0.0
    one_idle = collections.Counter()  # what the busy CPU ran meanwhile
    last = switches[0][0]
    for t, cpu, pid in switches:
        span, last = t - last, t
        idle = [c for c in cpus if running.get(c) == "0"]
        if len(idle) == len(cpus):
            all_idle += span
        elif idle and len(cpus) == 2:
            other = running.get(1 - idle[0])
            one_idle[f"{names.get(other, '?')}/{other}"] += span
        if running.get(cpu) == "0" and cpu in idle_since:
            d = t - idle_since.pop(cpu)
            lengths[bucket(d)] += d
        if pid == "0":
            idle_since[cpu] = t
        running[cpu] = pid
    window = switches[-1][0] - switches[0][0]
    total = sum(lengths.values())
    print(f"window {window * 1000:.0f} ms on {len(cpus)} CPUs; idle {total * 1000:.1f} ms "
          f"({100 * total / (window * len(cpus)):.1f} % of the CPU time)")
    print("idle periods by length:")
    for name in ("< 20 us", "< 100 us", "< 0.5 ms", "< 2 ms", ">= 2 ms"):
        print(f"  {name:>9}: {lengths[name] * 1000:7.1f} ms")
    print(f"every CPU idle at once: {all_idle * 1000:.1f} ms")
    if len(cpus) == 2:
        print("one CPU idle while the other ran:")
        for thread, d in one_idle.most_common(10):
            print(f"  {d * 1000:7.1f} ms  {thread}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
