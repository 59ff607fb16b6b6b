"""What the measuring scripts in docs/tools share: starting a server (a
mailpulse build, or the bench's bare axum ceiling) and one run of the
bench's load generator against it. Imported by the scripts beside it.
"""

import os
import re
import subprocess
import time


def start(cmd, env, log, wait_seconds=60):
    """Starts `cmd` with its output in the file `log`; returns (process,
    address) once it logs that it listens. `env` is added to this
    process's environment."""
    p = subprocess.Popen(cmd, env={**os.environ, "RUST_LOG": "warn,mailpulse=info", **env},
                         stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        m = re.search(r"listening addr=(\S+)", open(log).read())
        if m:
            return p, re.sub(r"\x1b\[[0-9;]*m", "", m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.2)
    p.kill()
    raise SystemExit(f"{cmd[0]} did not start; see {log}")


def load(bench, addr, seconds, connections, batch=1, rate=None):
    """The summary line of one `mailpulse-bench load` run (closed loop, or
    open loop at `rate` requests/s)."""
    cmd = [bench, "--seconds", str(seconds), "load", "--addr", addr,
           "--connections", str(connections), "--batch", str(batch)]
    if rate:
        cmd += ["--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 or "requests/s" not in out.stdout:
        raise SystemExit(f"the load generator failed:\n{out.stdout}{out.stderr}")
    return out.stdout.strip()


def requests_per_second(summary):
    return float(re.search(r"requests/s (\d+)", summary).group(1))
