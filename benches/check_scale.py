#!/usr/bin/env python3
"""`ferry check` on a plan with many providers (issue 14): a benchmark line, not a timed test.

The plan has N providers, alternately `s3` (endpoint, bucket, half with credential variable names) and
`local` (a root below a folder that exists), and N/2 jobs that each pair two neighbours:
s3 -> local and local -> local in turn, half of them with include/exclude globs. So every
provider is parsed and validated, and every job's locations, globs, name and overlap check
(local roots resolved on disk) run. `check` without --connect reaches no server.

Usage:  python3 benches/check_scale.py [--providers 100000] [--rounds 5]
Binary: $FERRY_BIN, else $CARGO_TARGET_DIR/release/ferry (as benches/compare.py).
Writes: appends a table to benches/results/<date>.md and prints it.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import FERRY, ROOT, run_measured  # noqa: E402


def write_plan(dir, n):
    """A plan with `n` providers and `n // 2` jobs; returns its path and size in bytes."""
    os.makedirs(os.path.join(dir, "data"), exist_ok=True)
    lines = []
    for i in range(n):
        if i % 2 == 0:
            # Every fourth with credential variables: the whole plan stays under the 16 MiB limit.
            lines += [f"[providers.p{i}]", 'type = "s3"', f'bucket = "bucket-{i}"',
                      'endpoint = "https://s3.example.com"', 'region = "us-east-1"']
            if i % 4 == 0:
                lines += ['access-key-id-env = "BENCH_KEY"', 'secret-access-key-env = "BENCH_SECRET"']
            lines.append("")
        else:
            lines += [f"[providers.p{i}]", 'type = "local"', f'root = "data/p{i}"', ""]
    for j in range(n // 2):
        # s3 p(2j) -> local p(2j+1), then local p(2j+1) -> local p(2j+3): both kinds of check.
        a, b = (2 * j, 2 * j + 1) if j % 2 == 0 else (2 * j - 1, 2 * j + 1)
        lines += ["[[objects]]", f'name = "job-{j}"', f'from = "p{a}:in/"', f'to = "p{b}:out-{j}/"']
        if j % 2:
            lines += ['include = ["**/*.jpg", "docs/**"]', 'exclude = ["**/tmp/**"]']
        lines.append("")
    path = os.path.join(dir, "plan.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--providers", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    version = subprocess.run([FERRY, "--version"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ferry-check-bench-") as tmp:
        plan, size = write_plan(tmp, a.providers)
        runs = [run_measured([FERRY, "check", plan], cwd=tmp) for _ in range(a.rounds)]
    wall = statistics.median(r[0] for r in runs)
    out = [
        f"## `ferry check`, {a.providers:,} providers: run of "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores; {version} ({FERRY}); plan {size / 2**20:.1f} MiB, "
        f"{a.providers:,} providers, {a.providers // 2:,} jobs; rounds: {a.rounds}",
        "",
        "| providers | median wall s | min s | max s | peak RSS MiB | CPU s |",
        "|---|---|---|---|---|---|",
        f"| {a.providers:,} | {wall:.2f} | {min(r[0] for r in runs):.2f} | {max(r[0] for r in runs):.2f} "
        f"| {max(r[1] for r in runs):.0f} | {statistics.median(r[2] for r in runs):.2f} |",
        "",
    ]
    os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benches", "results", f"{datetime.date.today()}.md")
    with open(path, "a") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))
    print(f"(appended to {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
