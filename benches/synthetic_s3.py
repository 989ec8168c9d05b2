#!/usr/bin/env python3
"""A synthetic S3 endpoint for listing benchmarks (issue 19, P4 on an S3 pair).

Every bucket named on the command line (default `src` and `dst`) holds the same N synthetic
objects, generated on the fly from their position: nothing is stored, and the server holds no
per-key structure. Keys look like `d123/0123456`, spread over up to 1000 "folders", and are
listed in byte order, as S3 lists them. Object `p` holds `p % 65` bytes (0-64) cut from a
repetition of its key, and its ETag is the quoted MD5 of those bytes, so a copy between two
such buckets has nothing to do and a tool that compares MD5s finds them equal.

Served (path-style, any SigV4 signature accepted, none checked):
  GET  /BUCKET?list-type=2   ListObjectsV2: prefix, delimiter, max-keys (<= 1000),
                             continuation-token, start-after, encoding-type=url, fetch-owner
  GET  /BUCKET               ListObjects (v1): prefix, delimiter, max-keys, marker
  GET  /BUCKET?versioning    not versioned; ?location: us-east-1; ?uploads: none open;
                             ?versions: an empty answer (not modelled)
  HEAD /BUCKET, GET /        the bucket exists; the bucket list
  HEAD/GET /BUCKET/KEY       the object (Range honoured), 404 NoSuchKey for any other key
  PUT, POST, DELETE          accepted and discarded (so a misbehaving run does not crash it)

Not modelled: storage, latency, throttling, versions, multipart listings. Listing is cheap
here (a few microseconds a key in Python), so a client's own cost is what a run measures.

Usage:  python3 benches/synthetic_s3.py PORT [--keys 1000000] [--buckets src,dst] [--verbose]
Prints `listening on 127.0.0.1:PORT` once ready. --verbose logs each request line to stderr.
"""
import argparse
import base64
import bisect
import datetime
import functools
import hashlib
import http.server
import socketserver
import sys
import urllib.parse
from email.utils import formatdate

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MODIFIED = "2026-11-01T00:00:00.000Z"
MODIFIED_HTTP = formatdate(datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc).timestamp(), usegmt=True)
PAGE = 1000


class Keys:
    """N keys in byte order: key(p) increases with p, so positions are found by bisection."""

    def __init__(self, n):
        self.n = n
        self.per_folder = max(1, -(-n // 1000))
        self.width = max(7, len(str(max(n - 1, 0))))
        self.fwidth = max(3, len(str((n - 1) // self.per_folder if n else 0)))

    def key(self, p):
        return f"d{p // self.per_folder:0{self.fwidth}d}/{p:0{self.width}d}"

    def __getitem__(self, p):  # for bisect
        return self.key(p)

    def __len__(self):
        return self.n

    def position(self, key):
        """The position of `key`, or None when no object has it."""
        try:
            folder, num = key.split("/")
            p = int(num)
        except ValueError:
            return None
        if 0 <= p < self.n and self.key(p) == key:
            return p
        return None

    def first_at_or_after(self, key):
        return bisect.bisect_left(self, key)

    def first_after(self, key):
        return bisect.bisect_right(self, key)


def body_of(key, p):
    size = p % 65
    unit = (key + "\n").encode()
    return (unit * (size // len(unit) + 1))[:size]


def etag_of(key, p):
    return hashlib.md5(body_of(key, p)).hexdigest()


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def enc_key(s, url):
    # S3's encoding-type=url: a form value (space as `+`), `/` left as is.
    return urllib.parse.quote_plus(s, safe="/") if url else esc(s)


def successor(prefix):
    """The least string greater than every string starting with `prefix`."""
    return prefix + "\U0010ffff"


def walk(keys, start, prefix, delimiter, max_keys):
    """Entries from position `start` on, below `prefix`: ("key", key, p) and ("prefix", cp).
    Returns (entries, truncated)."""
    end = keys.first_at_or_after(successor(prefix)) if prefix else keys.n
    p = max(start, keys.first_at_or_after(prefix) if prefix else 0)
    out = []
    while p < end:
        if len(out) >= max_keys:
            return out, True
        k = keys.key(p)
        if delimiter:
            i = k.find(delimiter, len(prefix))
            if i >= 0:
                cp = k[:i + len(delimiter)]
                out.append(("prefix", cp))
                p = keys.first_at_or_after(successor(cp))
                continue
        out.append(("key", k, p))
        p += 1
    return out, False


def contents_xml(entries, url, owner):
    parts = []
    own = "<Owner><ID>synthetic</ID><DisplayName>synthetic</DisplayName></Owner>" if owner else ""
    for e in entries:
        if e[0] == "key":
            _, k, p = e
            parts.append(
                f"<Contents><Key>{enc_key(k, url)}</Key><LastModified>{MODIFIED}</LastModified>"
                f"<ETag>&quot;{etag_of(k, p)}&quot;</ETag><Size>{p % 65}</Size>{own}"
                f"<StorageClass>STANDARD</StorageClass></Contents>")
    for e in entries:
        if e[0] == "prefix":
            parts.append(f"<CommonPrefixes><Prefix>{enc_key(e[1], url)}</Prefix></CommonPrefixes>")
    return "".join(parts)


@functools.lru_cache(maxsize=256)
def page(keys, start, prefix, delimiter, max_keys, url, owner):
    """One page's entries as XML, the same for every bucket: the two sides of a copy list the
    same pages at about the same time, so the second asks for a page the first just built.
    Returns (Contents and CommonPrefixes XML, entry count, truncated, last entry)."""
    entries, truncated = walk(keys, start, prefix, delimiter, max_keys)
    return contents_xml(entries, url, owner), len(entries), truncated, (entries[-1] if entries else None)


def token_for(entry):
    mark = ("k:" + entry[1]) if entry[0] == "key" else ("p:" + entry[1])
    return base64.urlsafe_b64encode(mark.encode()).decode()


def start_of_token(keys, token):
    mark = base64.urlsafe_b64decode(token.encode()).decode()
    if mark.startswith("p:"):
        return keys.first_at_or_after(successor(mark[2:]))
    return keys.first_after(mark[2:])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SyntheticS3"
    sys_version = ""
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s\n" % (fmt % args))

    def send(self, status, body=b"", headers=(), head=False, ctype="application/xml"):
        if isinstance(body, str):
            body = body.encode()
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 "Server: SyntheticS3", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                 "x-amz-request-id: 0", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in headers]
        out = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if not head:
            out += body
        self.wfile.write(out)
        if self.server.verbose:
            self.log_request(status, len(body))

    def error(self, status, code, msg, head=False):
        self.send(status, f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                          f"<Message>{msg}</Message><RequestId>0</RequestId></Error>", head=head)

    def drain(self):
        n = self.headers.get("Content-Length")
        if n is not None:
            left = int(n)
            while left > 0:
                got = self.rfile.read(min(left, 1 << 20))
                if not got:
                    break
                left -= len(got)
            return
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)

    def parsed(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        path = urllib.parse.unquote(u.path)
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key, {k: v[0] for k, v in q.items()}

    # --- requests -------------------------------------------------------------------------

    def do_GET(self, head=False):
        self.drain()
        bucket, key, q = self.parsed()
        if not bucket:
            names = "".join(f"<Bucket><Name>{b}</Name><CreationDate>{MODIFIED}</CreationDate></Bucket>"
                            for b in self.server.buckets)
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="{NS}">'
                                  f"<Owner><ID>synthetic</ID></Owner><Buckets>{names}</Buckets></ListAllMyBucketsResult>",
                             head=head)
        if bucket not in self.server.buckets:
            return self.error(404, "NoSuchBucket", "The specified bucket does not exist", head)
        if key:
            return self.get_object(bucket, key, head)
        if head:
            return self.send(200, head=True, headers=[("x-amz-bucket-region", "us-east-1")])
        if "versioning" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<VersioningConfiguration xmlns="{NS}"/>')
        if "location" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{NS}"/>')
        if "uploads" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="{NS}">'
                                  f"<Bucket>{bucket}</Bucket><KeyMarker/><UploadIdMarker/><MaxUploads>1000</MaxUploads>"
                                  "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>")
        if "versions" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="{NS}">'
                                  f"<Name>{bucket}</Name><Prefix/><KeyMarker/><VersionIdMarker/><MaxKeys>1000</MaxKeys>"
                                  "<IsTruncated>false</IsTruncated></ListVersionsResult>")
        if q.get("list-type") == "2":
            return self.list_v2(bucket, q)
        if any(k in q for k in ("acl", "policy", "tagging", "encryption", "lifecycle", "cors", "website",
                                "object-lock", "ownershipControls", "publicAccessBlock")):
            return self.error(404, "NoSuchConfiguration", "not configured")
        return self.list_v1(bucket, q)

    def do_HEAD(self):
        self.do_GET(head=True)

    def get_object(self, bucket, key, head):
        keys = self.server.keys
        p = keys.position(key)
        if p is None:
            return self.error(404, "NoSuchKey", "The specified key does not exist.", head)
        data = body_of(key, p)
        headers = [("ETag", f'"{hashlib.md5(data).hexdigest()}"'), ("Last-Modified", MODIFIED_HTTP),
                   ("Accept-Ranges", "bytes"), ("x-amz-storage-class", "STANDARD")]
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and data:
            a, _, b = rng[6:].partition("-")
            if a == "":
                start, stop = max(0, len(data) - int(b)), len(data) - 1
            else:
                start, stop = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self.error(416, "InvalidRange", "The requested range is not satisfiable", head)
            headers.append(("Content-Range", f"bytes {start}-{stop}/{len(data)}"))
            return self.send(206, data[start:stop + 1], headers, head, "application/octet-stream")
        return self.send(200, data, headers, head, "application/octet-stream")

    def list_v2(self, bucket, q):
        keys = self.server.keys
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        max_keys = min(int(q.get("max-keys") or PAGE), PAGE)
        url = q.get("encoding-type") == "url"
        token = q.get("continuation-token")
        start_after = q.get("start-after", "")
        if token:
            start = start_of_token(keys, token)
        else:
            start = keys.first_after(start_after) if start_after else 0
        body, count, truncated, last = page(keys, start, prefix, delimiter, max_keys, url,
                                            q.get("fetch-owner") == "true")
        head = [f"<Name>{bucket}</Name><Prefix>{enc_key(prefix, url)}</Prefix>"]
        if token:
            head.append(f"<ContinuationToken>{esc(token)}</ContinuationToken>")
        if start_after:
            head.append(f"<StartAfter>{enc_key(start_after, url)}</StartAfter>")
        head.append(f"<KeyCount>{count}</KeyCount><MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            head.append(f"<Delimiter>{enc_key(delimiter, url)}</Delimiter>")
        if url:
            head.append("<EncodingType>url</EncodingType>")
        head.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if truncated:
            head.append(f"<NextContinuationToken>{token_for(last)}</NextContinuationToken>")
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NS}">' + "".join(head)
               + body + "</ListBucketResult>")
        self.send(200, xml)

    def list_v1(self, bucket, q):
        keys = self.server.keys
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        max_keys = min(int(q.get("max-keys") or PAGE), PAGE)
        url = q.get("encoding-type") == "url"
        marker = q.get("marker", "")
        # A marker that is a common prefix skips everything below it, as S3 does.
        start = keys.first_after(marker) if marker else 0
        if marker and delimiter and marker.endswith(delimiter):
            start = keys.first_at_or_after(successor(marker))
        body, count, truncated, last = page(keys, start, prefix, delimiter, max_keys, url, True)
        head = [f"<Name>{bucket}</Name><Prefix>{enc_key(prefix, url)}</Prefix><Marker>{enc_key(marker, url)}</Marker>"]
        if truncated and delimiter:
            head.append(f"<NextMarker>{enc_key(last[1], url)}</NextMarker>")
        head.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            head.append(f"<Delimiter>{enc_key(delimiter, url)}</Delimiter>")
        if url:
            head.append("<EncodingType>url</EncodingType>")
        head.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NS}">' + "".join(head)
               + body + "</ListBucketResult>")
        self.send(200, xml)

    def do_PUT(self):
        self.drain()
        bucket, key, q = self.parsed()
        self.send(200, b"", [("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')])

    def do_POST(self):
        self.drain()
        bucket, key, q = self.parsed()
        if "uploads" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult xmlns="{NS}">'
                                  f"<Bucket>{bucket}</Bucket><Key>{esc(key)}</Key><UploadId>discarded</UploadId>"
                                  "</InitiateMultipartUploadResult>")
        if "uploadId" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="{NS}">'
                                  f"<Bucket>{bucket}</Bucket><Key>{esc(key)}</Key>"
                                  '<ETag>"d41d8cd98f00b204e9800998ecf8427e-1"</ETag></CompleteMultipartUploadResult>')
        if "delete" in q:
            return self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{NS}"/>')
        self.send(200)

    def do_DELETE(self):
        self.drain()
        self.send(204)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--buckets", default="src,dst")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.keys = Keys(a.keys)
    srv.buckets = set(a.buckets.split(","))
    srv.verbose = a.verbose
    print(f"listening on 127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
