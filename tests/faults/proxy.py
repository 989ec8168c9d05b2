#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for ferry's fault tests (issue 8). python3 stdlib only.

It listens on 127.0.0.1 and forwards every request to one upstream HTTP server (SeaweedFS,
moto, Azurite, the GCS shim), keeping the client's Host header so request signatures (SigV4,
SharedKey) still verify upstream. At a chosen rate it injects a fault instead of, or into, the
upstream's answer:

  500       500 Internal Server Error with an S3 XML error body (not forwarded)
  503       503 SlowDown with an S3 XML error body, as S3 throttles (not forwarded)
  429       429 Too Many Requests (not forwarded)
  reset     the connection is reset (TCP RST, no response; not forwarded)
  truncate  forwarded; the response headers announce the full Content-Length, then only half
            of the body is sent and the connection is closed (GET responses with a body; a GET
            whose answer has no body gets a reset instead, counted as a reset)
  delay     forwarded after a pause of --delay-min..--delay-max seconds

Faults are drawn from a seeded PRNG (--seed), so a failing run can be replayed (thread
interleaving aside). Only requests whose path matches --path-regex are eligible (default: all);
--url-regex matches the path with its query string (e.g. `uploadId=`); --methods limits
eligibility to some methods; --header-regex NAME=REGEX to requests carrying a matching header
(e.g. `Authorization=^Bearer ya29\.` counts the requests signed with one token); --truncate-path-regex limits truncation to some
paths (e.g. object reads but not listings); --skip spares the first N eligible requests;
--max-faults stops injecting after that many.

A throttling server instead of random faults: --throttle-above N answers 503 SlowDown to any
request that arrives while N others are being served (as S3 does when a prefix is pushed past
its request rate), for the first --throttle-requests requests (default: all of them); --rate 0
turns the random faults off.

SSE-style ETags, as S3 answers for objects encrypted with SSE-KMS or SSE-C (32 hex digits that
are not the MD5 of the bytes; moto and SeaweedFS keep MD5 ETags whatever the encryption):
--sse-etags MODE rewrites every ETag the upstream gives (the `ETag` header of any answer; `<ETag>`
in the XML of listings, CompleteMultipartUpload, CopyObject, UploadPartCopy and ListParts) to a
deterministic value that is not the object's MD5: the MD5 of `ferry-sse:BUCKET:ETAG`, `-N`
kept for multipart ETags, so one object's ETag differs between buckets as KMS ETags do. The
client's references to those values (If-Match, If-None-Match, x-amz-copy-source-if-match, the
part ETags in a CompleteMultipartUpload body) are mapped back before forwarding; a request so
changed no longer matches its SigV4 signature, so for a server that checks signatures
(SeaweedFS) give --resign-secret-env VAR (the variable holding the secret key) and the proxy signs
it again (moto checks none). MODE:

  kms           adds `x-amz-server-side-encryption: aws:kms` (and a key id) to every answer
  c             adds `x-amz-server-side-encryption-customer-algorithm: AES256` (and a key MD5)
  none-headers  adds nothing, and drops any SSE header: the ETags then claim to be MD5s and are
                wrong, as a corrupting server or a bad read would make them
--sse-methods limits the rewriting to answers to some methods (e.g. PUT: only the ETag a PUT
returns is wrong).

  GET /__faults   JSON: {"requests": N, "eligible": N, "faulted": N, "faults": {kind: count},
                         "throttled": N, "peak_in_flight": N, "etags_rewritten": N}
  (answered by the proxy itself, never faulted, never forwarded)

The first line on stdout is `listening on 127.0.0.1:PORT` (with --port 0 the OS picks the port).

  python3 tests/faults/proxy.py --upstream 127.0.0.1:8333 --rate 0.1 --seed 7 --port 0
"""

import argparse
import hashlib
import hmac
import http.client
import os
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ["500", "503", "429", "reset", "truncate", "delay"]
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 256 * 1024
SSE_MODES = ["kms", "c", "none-headers"]
SSE_HEADERS = {
    "kms": [
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:us-east-1:000000000000:key/ferry-test"),
    ],
    "c": [
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption-customer-key-MD5", "ZmVycnktdGVzdC1rZXktbWQ1PT0="),
    ],
    "none-headers": [],
}
HEX32 = re.compile(rb"[0-9a-fA-F]{32}")
XML_ETAG = re.compile(rb"(<ETag>(?:&quot;|&#34;|\")?)([0-9a-fA-F]{32})((?:-[0-9]+)?(?:&quot;|&#34;|\")?</ETag>)")
CONDITIONAL = ("if-match", "if-none-match", "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match")


class SseEtags:
    """--sse-etags: real ETag <-> SSE-style stand-in, both ways."""

    def __init__(self, mode, methods):
        self.mode = mode
        self.methods = {m.upper() for m in methods} if methods else None
        self.lock = threading.Lock()
        self.real = {}  # stand-in hex -> real hex
        self.rewritten = 0

    def applies(self, method):
        return self.methods is None or method in self.methods

    def fake(self, bucket, real):
        f = hashlib.md5(b"ferry-sse:" + bucket + b":" + real.lower()).hexdigest().encode()
        with self.lock:
            self.real[f] = real
            self.rewritten += 1
        return f

    def to_client_header(self, bucket, value):
        return HEX32.sub(lambda m: self.fake(bucket, m.group(0)), value.encode("latin-1"), count=1).decode("latin-1")

    def to_client_body(self, bucket, body):
        return XML_ETAG.sub(lambda m: m.group(1) + self.fake(bucket, m.group(2)) + m.group(3), body)

    def to_upstream(self, data):
        """Stand-ins the client sends back (conditions, part lists) become the real ETags."""
        with self.lock:
            return HEX32.sub(lambda m: self.real.get(m.group(0).lower(), m.group(0)), data)


class Faults:
    """The fault plan and its counters, shared by every connection thread."""

    def __init__(self, rate, seed, kinds, path_regex, methods, truncate_regex=None, max_faults=None, skip=0, url_regex=None):
        self.rate = rate
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.path_re = re.compile(path_regex) if path_regex else None
        self.url_re = re.compile(url_regex) if url_regex else None
        self.methods = {m.upper() for m in methods} if methods else None
        self.truncate_re = re.compile(truncate_regex) if truncate_regex else None
        self.max_faults = max_faults
        self.skip = skip
        self.drawn = 0
        self.lock = threading.Lock()
        self.requests = 0
        self.eligible = 0
        self.counts = {k: 0 for k in KINDS}
        self.throttle_above = None
        self.throttle_requests = None
        self.arrived = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.throttled = 0
        self.header_re = None

    def admit(self):
        """True if a request may be served now; False: answer it 503 SlowDown."""
        with self.lock:
            self.arrived += 1
            throttling = self.throttle_above is not None and (
                self.throttle_requests is None or self.arrived <= self.throttle_requests
            )
            if throttling and self.in_flight >= self.throttle_above:
                self.throttled += 1
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def draw(self, method, path, headers=None):
        """The fault for one request, or None. Truncation is only drawn for GETs."""
        with self.lock:
            self.requests += 1
            bare = path.split("?", 1)[0]
            if self.header_re is not None:
                name, rx = self.header_re
                if headers is None or not rx.search(headers.get(name, "")):
                    return None
            if self.path_re is not None and not self.path_re.search(bare):
                return None
            if self.url_re is not None and not self.url_re.search(path):
                return None
            if self.methods is not None and method not in self.methods:
                return None
            self.eligible += 1
            if self.eligible <= self.skip:
                return None
            if self.max_faults is not None and self.drawn >= self.max_faults:
                return None
            if self.rng.random() >= self.rate:
                return None
            can_truncate = method == "GET" and (
                self.truncate_re is None or self.truncate_re.search(bare) is not None
            )
            kinds = [k for k in self.kinds if k != "truncate" or can_truncate]
            if not kinds:
                return None
            self.drawn += 1
            return kinds[self.rng.randrange(len(kinds))], self.rng.random()

    def count(self, kind):
        with self.lock:
            self.counts[kind] += 1

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "eligible": self.eligible,
                "faulted": sum(self.counts.values()),
                "faults": dict(self.counts),
                "rate": self.rate,
                "throttled": self.throttled,
                "peak_in_flight": self.peak_in_flight,
            }


def s3_error(status, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<Resource></Resource><RequestId>ferry-fault-proxy</RequestId></Error>"
    ).encode()
    return status, body


CANNED = {
    "500": s3_error(500, "InternalError", "We encountered an internal error. Please try again."),
    "503": s3_error(503, "SlowDown", "Please reduce your request rate."),
    "429": s3_error(429, "TooManyRequests", "Too many requests."),
}
REASONS = {500: "Internal Server Error", 503: "Slow Down", 429: "Too Many Requests"}


def resign(method, path, headers, body, secret):
    """Signs a changed request again with AWS SigV4 (header auth), keeping the client's
    credential scope, date and signed-header list; the payload hash is recomputed where the
    client sent one. `headers` is the request's email.message.Message, changed in place.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html"""
    auth = headers.get("Authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/([^,]+), *SignedHeaders=([^,]+), *Signature=[0-9a-f]+", auth)
    if not m:
        return
    access_key, scope, signed = m.group(1), m.group(2), m.group(3)
    payload = headers.get("x-amz-content-sha256", "")
    if re.fullmatch(r"[0-9a-f]{64}", payload):
        payload = hashlib.sha256(body).hexdigest()
        del headers["x-amz-content-sha256"]
        headers["x-amz-content-sha256"] = payload
    bare, _, query = path.partition("?")
    pairs = sorted(tuple((q.split("=", 1) + [""])[:2]) for q in query.split("&") if q)
    canonical = "\n".join(
        [
            method,
            bare,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{h}:{' '.join(str(headers.get(h, '')).split())}\n" for h in signed.split(";")),
            signed,
            payload,
        ]
    )
    date = headers.get("x-amz-date", "")
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    del headers["Authorization"]
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-fault-proxy"
    # Filled in by main().
    faults = None
    sse = None
    resign_secret = None
    upstream = None
    delay = (0.2, 1.0)
    local = threading.local()

    def log_message(self, fmt, *args):  # quiet: the counters tell the story
        pass

    def finish(self):
        super().finish()
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
            self.local.conn = None

    # -- plumbing ------------------------------------------------------------------------------

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is not None:
            n = int(length)
            chunks = []
            while n > 0:
                c = self.rfile.read(min(n, CHUNK))
                if not c:
                    raise ConnectionError("client closed mid-body")
                chunks.append(c)
                n -= len(c)
            return b"".join(chunks)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(out)
                out.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def upstream_conn(self, fresh=False):
        c = getattr(self.local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            host, port = self.upstream
            c = http.client.HTTPConnection(host, port, timeout=600)
            self.local.conn = c
        return c

    def forward(self, body):
        """Sends the request upstream; returns the response (body not read yet)."""
        # A POST is not idempotent (CreateMultipartUpload opens a new upload each time it
        # arrives): it goes on a fresh connection and is never sent twice, or a retry after a
        # connection the server dropped once it had done the work leaves an upload ferry never
        # heard of (seen as an orphaned upload in mixed_faults_* with no fault injected on it).
        post = self.command == "POST"
        for attempt in range(2):
            conn = self.upstream_conn(fresh=attempt > 0 or post)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                        continue
                    conn.putheader(k, v)
                if body or self.command in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                return conn.getresponse()
            except (ConnectionError, http.client.HTTPException, OSError):
                # A kept-alive upstream connection may have been closed by the server: retry
                # once on a fresh one. This is the proxy's own plumbing, not an injected fault.
                if attempt == 1 or post:
                    raise
        raise AssertionError("unreachable")

    def send_head(self, status, reason, headers, length):
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        for k, v in headers:
            if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                continue
            lines.append(f"{k}: {v}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        self.wfile.write("".join(lines).encode("latin-1"))

    def reset(self):
        """Abort the connection with a TCP RST: SO_LINGER with a zero timeout, then close."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- requests ------------------------------------------------------------------------------

    def handle_any(self):
        if self.path.split("?", 1)[0] == "/__faults":
            stats = self.faults.snapshot()
            stats["etags_rewritten"] = self.sse.rewritten if self.sse is not None else 0
            body = json.dumps(stats).encode()
            self.send_head(200, "OK", [("Content-Type", "application/json")], len(body))
            self.wfile.write(body)
            return
        try:
            body = self.read_body()
        except (ConnectionError, ValueError):
            self.close_connection = True
            return
        if not self.faults.admit():
            status, err = CANNED["503"]
            self.send_head(status, REASONS[status], [("Content-Type", "application/xml")], len(err))
            self.wfile.write(err)
            return
        try:
            self.serve(body)
        finally:
            self.faults.leave()

    def serve(self, body):
        drawn = self.faults.draw(self.command, self.path, self.headers)
        kind, r = drawn if drawn else (None, 0.0)

        if kind in CANNED:
            self.faults.count(kind)
            status, err = CANNED[kind]
            self.send_head(status, REASONS[status], [("Content-Type", "application/xml")], len(err))
            self.wfile.write(err)
            return
        if kind == "reset":
            self.faults.count(kind)
            self.reset()
            return
        if kind == "delay":
            self.faults.count(kind)
            lo, hi = self.delay
            time.sleep(lo + (hi - lo) * r)

        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        if self.sse is not None:
            changed = False
            for k in list(self.headers.keys()):
                if k.lower() in CONDITIONAL:
                    v = self.sse.to_upstream(self.headers[k].encode("latin-1")).decode("latin-1")
                    changed |= v != self.headers[k]
                    del self.headers[k]
                    self.headers[k] = v
            if self.command == "POST" and "uploadId=" in query:
                mapped = self.sse.to_upstream(body)
                changed |= mapped != body
                body = mapped
            if changed and self.resign_secret is not None:
                resign(self.command, self.path, self.headers, body, self.resign_secret)
        try:
            resp = self.forward(body)
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            msg = f"fault proxy: upstream unreachable: {e}".encode()
            self.send_head(502, "Bad Gateway", [("Content-Type", "text/plain")], len(msg))
            self.wfile.write(msg)
            return
        headers = resp.getheaders()
        sse = self.sse if self.sse is not None and self.sse.applies(self.command) else None
        if sse is not None:
            bucket = self.path.split("?", 1)[0].lstrip("/").split("/", 1)[0].encode("latin-1")
            headers = [
                (k, sse.to_client_header(bucket, v) if k.lower() == "etag" else v)
                for k, v in headers
                if not k.lower().startswith("x-amz-server-side-encryption")
            ]
            if 200 <= resp.status < 300:
                headers += SSE_HEADERS[sse.mode]
            # Bodies of object reads are the object's bytes, never rewritten; what else carries
            # ETags is XML: listings (a query), multipart answers (a query), copies (a PUT).
            if self.command != "HEAD" and (query or self.command in ("PUT", "POST")):
                data = sse.to_client_body(bucket, resp.read())
                self.send_head(resp.status, resp.reason, headers, len(data))
                self.wfile.write(data)
                return
        if self.command == "HEAD":
            resp.read()
            length = resp.getheader("Content-Length", "0")
            lines = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
            lines += [f"{k}: {v}\r\n" for k, v in headers if k.lower() not in HOP_BY_HOP]
            if resp.getheader("Content-Length") is None:
                lines.append(f"Content-Length: {length}\r\n")
            self.wfile.write(("".join(lines) + "\r\n").encode("latin-1"))
            return
        declared = resp.getheader("Content-Length")
        if declared is None or kind == "truncate":
            # Chunked upstream answers are re-framed with a length; a truncation needs the whole
            # body to know its half.
            data = resp.read()
            if kind == "truncate":
                if len(data) < 2:
                    # Nothing to cut in half: abort instead, and count what was really done.
                    self.faults.count("reset")
                    self.reset()
                    return
                self.faults.count("truncate")
                self.send_head(resp.status, resp.reason, headers, len(data))
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.send_head(resp.status, resp.reason, headers, len(data))
            self.wfile.write(data)
            return
        n = int(declared)
        self.send_head(resp.status, resp.reason, headers, n)
        while n > 0:
            c = resp.read(min(n, CHUNK))
            if not c:
                # The upstream itself cut the body short: pass the failure on, do not pad.
                self.close_connection = True
                self.upstream_conn(fresh=True)
                return
            self.wfile.write(c)
            n -= len(c)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Clients going away mid-response (they were sent a reset or a truncation, or gave up)
        # are expected here; say nothing.
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the real server (127.0.0.1 only)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ap.add_argument("--rate", type=float, default=0.1, help="fraction of eligible requests faulted")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    ap.add_argument("--path-regex", default=None, help="only paths matching this are eligible")
    ap.add_argument("--url-regex", default=None, help="only paths with query matching this are eligible")
    ap.add_argument("--methods", default=None, help="comma-separated methods eligible (default all)")
    ap.add_argument("--header-regex", default=None, help="NAME=REGEX: only requests whose header NAME matches are eligible")
    ap.add_argument("--skip", type=int, default=0, help="never fault the first N eligible requests")
    ap.add_argument("--max-faults", type=int, default=None, help="inject at most this many faults")
    ap.add_argument("--truncate-path-regex", default=None, help="only paths matching this may be truncated")
    ap.add_argument("--delay-min", type=float, default=0.2)
    ap.add_argument("--delay-max", type=float, default=1.0)
    ap.add_argument("--throttle-above", type=int, default=None, help="503 SlowDown while N requests are served")
    ap.add_argument("--throttle-requests", type=int, default=None, help="throttle only the first N requests")
    ap.add_argument("--sse-etags", choices=SSE_MODES, default=None, help="rewrite ETags as SSE-KMS/SSE-C would give them")
    ap.add_argument("--sse-methods", default=None, help="comma-separated methods whose answers --sse-etags rewrites")
    ap.add_argument("--resign-secret-env", default=None, help="variable holding the S3 secret key to sign changed requests again")
    a = ap.parse_args()

    host, _, port = a.upstream.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("fault proxy: the upstream must be on 127.0.0.1")
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        sys.exit(f"fault proxy: unknown fault kind(s) {bad}; known: {KINDS}")
    Handler.faults = Faults(
        a.rate,
        a.seed,
        kinds,
        a.path_regex,
        a.methods.split(",") if a.methods else None,
        a.truncate_path_regex,
        a.max_faults,
        a.skip,
        a.url_regex,
    )
    if a.header_regex:
        name, _, rx = a.header_regex.partition("=")
        Handler.faults.header_re = (name, re.compile(rx))
    Handler.faults.throttle_above = a.throttle_above
    Handler.faults.throttle_requests = a.throttle_requests
    if a.resign_secret_env:
        Handler.resign_secret = os.environ.get(a.resign_secret_env) or sys.exit(f"fault proxy: ${a.resign_secret_env} is not set")
    if a.sse_etags:
        Handler.sse = SseEtags(a.sse_etags, a.sse_methods.split(",") if a.sse_methods else None)
    Handler.upstream = ("127.0.0.1", int(port))
    Handler.delay = (a.delay_min, a.delay_max)
    srv = Server(("127.0.0.1", a.port), Handler)
    print(f"listening on 127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
