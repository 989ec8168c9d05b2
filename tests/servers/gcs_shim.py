#!/usr/bin/env python3
"""GCS XML-API write shim for ferry's tests (python3 stdlib only).

WHAT THIS IS: a protocol translator, not a storage server. The Rust `object_store`
crate's GCS client writes through GCS's *XML* API (PUT /BUCKET/OBJECT, multipart
uploads via ?uploads / ?partNumber&uploadId / ?uploadId, server-side copy via
`x-goog-copy-source`), which upstream fake-gcs-server does not implement. This shim
listens on 127.0.0.1:4444 in front of a real fake-gcs-server (127.0.0.1:4443) and
turns those XML-API writes into fake-gcs-server JSON-API calls, so that the objects
end up stored in fake-gcs-server, where tests can read them back (directly on :4443
or through the shim). It stores NOTHING itself, except the parts of in-flight
multipart uploads (temp files under the state dir, deleted on complete/abort).

Every request it does not translate (GET/HEAD objects, ranged GETs, XML listing
`GET /BUCKET?list-type=2`, JSON API calls, DELETE object, ...) is forwarded to
fake-gcs-server byte for byte: method, path, query, headers, streamed bodies, and the
upstream status and headers (Range / Content-Range / ETag / x-goog-*) come back as-is.
The only header rewritten is Host (set to the upstream's host:port), because
fake-gcs-server serves path-style XML requests only for its -public-host.

Translated requests:
  PUT  /B/O                         -> POST /upload/storage/v1/b/B/o?uploadType=multipart
                                       (Content-Type, Cache-Control, Content-Disposition,
                                       Content-Encoding, Content-Language,
                                       x-goog-storage-class and x-goog-meta-* -> JSON metadata)
  PUT  /B/O + x-goog-copy-source    -> POST /storage/v1/b/SB/o/SO/copyTo/b/B/o/O
  POST /B/O?uploads                 -> new upload id, InitiateMultipartUploadResult XML
  PUT  /B/O?partNumber=N&uploadId=U -> part kept in a temp file, ETag = "md5hex"
  POST /B/O?uploadId=U  (XML body)  -> parts concatenated (streamed) and uploaded as above,
                                       CompleteMultipartUploadResult XML
  DELETE /B/O?uploadId=U            -> temp parts removed, 204
  GET  /B/O?uploadId=U, GET /B?uploads (list parts / uploads) -> 501 (not implemented)
  GET  /_ferry_shim/health          -> 200 (the shim's own liveness check, used by up.sh)

Preconditions: fake-gcs-server 1.54 ignores ifGenerationMatch on uploads and copies, so
the shim checks `x-goog-if-generation-match` itself (0 = must not exist, N = current
generation must be N) and answers 412 like GCS. The check and the write happen under a
per-object lock in the shim, so they are atomic with respect to other writes made
through the shim (not with respect to writes made directly on :4443).
Multipart rules enforced like GCS/S3: parts listed in ascending order, ETags must match,
every part except the last must be >= 5 MiB (EntityTooSmall otherwise).

Usage: gcs_shim.py [--listen 127.0.0.1:4444] [--upstream 127.0.0.1:4443] [--state-dir D]
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape as xml_escape

CHUNK = 1 << 20
MIN_PART = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "expect",
}
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

UPSTREAM = ("127.0.0.1", 4443)
PARTS_DIR = None
_locks_guard = threading.Lock()
_locks = {}


def object_lock(bucket, name):
    with _locks_guard:
        lk = _locks.get((bucket, name))
        if lk is None:
            lk = _locks[(bucket, name)] = threading.Lock()
        return lk


def q(s):
    """Encode one path segment for the JSON API (everything but unreserved)."""
    return urllib.parse.quote(s, safe="")


def header_text(v):
    """http.server decodes header bytes as latin-1; recover the UTF-8 text if it was UTF-8."""
    try:
        return v.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return v


class ShimError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def upstream_conn():
    return http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=300)


def upstream_json(method, path, body=None, headers=None):
    """Small JSON-API call to fake-gcs-server. Returns (status, parsed-json-or-None, raw)."""
    conn = upstream_conn()
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return resp.status, data, raw
    finally:
        conn.close()


def upstream_error(status, raw):
    try:
        msg = json.loads(raw)["error"]["message"]
    except Exception:  # noqa: BLE001 - any shape of upstream error body
        msg = raw.decode("utf-8", "replace").strip() or "upstream error"
    code = {400: "InvalidArgument", 404: "NoSuchKey", 409: "Conflict",
            412: "PreconditionFailed"}.get(status, "InternalError")
    return ShimError(status, code, "fake-gcs-server: " + msg)


def current_generation(bucket, name):
    status, data, raw = upstream_json("GET", f"/storage/v1/b/{q(bucket)}/o/{q(name)}")
    if status == 404:
        return None
    if status != 200:
        raise upstream_error(status, raw)
    return str(data.get("generation"))


def check_precondition(headers, bucket, name):
    want = headers.get("x-goog-if-generation-match")
    if want is None:
        return
    want = want.strip()
    gen = current_generation(bucket, name)
    if (want == "0" and gen is not None) or (want != "0" and gen != want):
        raise ShimError(412, "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold.")


def object_resource(headers, name):
    """JSON object resource from XML-API request headers."""
    meta = {"name": name}
    ct = headers.get("Content-Type")
    meta["contentType"] = header_text(ct) if ct else "application/octet-stream"
    for h, field in (("Cache-Control", "cacheControl"),
                     ("Content-Disposition", "contentDisposition"),
                     ("Content-Encoding", "contentEncoding"),
                     ("Content-Language", "contentLanguage"),
                     ("x-goog-storage-class", "storageClass")):
        v = headers.get(h)
        if v is not None:
            meta[field] = header_text(v)
    user = {}
    for k, v in headers.items():
        if k.lower().startswith("x-goog-meta-"):
            user[header_text(k[len("x-goog-meta-"):])] = header_text(v)
    if user:
        meta["metadata"] = user
    return meta


def upload_object(bucket, resource, sources, length):
    """Upload `length` bytes, read in order from the file paths/objects in `sources`,
    as one multipart/related JSON-API upload. Returns the JSON object resource."""
    boundary = "ferry-shim-" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            + json.dumps(resource)
            + f"\r\n--{boundary}\r\nContent-Type: {resource['contentType']}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = upstream_conn()
    try:
        conn.putrequest("POST", f"/upload/storage/v1/b/{q(bucket)}/o?uploadType=multipart",
                        skip_accept_encoding=True)
        conn.putheader("Content-Type", f"multipart/related; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + length + len(tail)))
        conn.endheaders()
        conn.send(head)
        sent = 0
        for src in sources:
            f = open(src, "rb") if isinstance(src, str) else src
            try:
                f.seek(0)
                while True:
                    buf = f.read(CHUNK)
                    if not buf:
                        break
                    conn.send(buf)
                    sent += len(buf)
            finally:
                if isinstance(src, str):
                    f.close()
        if sent != length:
            raise ShimError(500, "InternalError", f"body length changed ({sent} != {length})")
        conn.send(tail)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status == 404:
            raise ShimError(404, "NoSuchBucket", "The specified bucket does not exist.")
        if resp.status != 200:
            raise upstream_error(resp.status, raw)
        return json.loads(raw)
    finally:
        conn.close()


def object_headers(obj):
    """Response headers GCS's XML API returns for a written object."""
    h = [("ETag", '"%s"' % obj.get("etag", "")),
         ("x-goog-generation", str(obj.get("generation", ""))),
         ("x-goog-metageneration", str(obj.get("metageneration", "1"))),
         ("x-goog-stored-content-length", str(obj.get("size", "0")))]
    hashes = []
    if obj.get("crc32c"):
        hashes.append("crc32c=" + obj["crc32c"])
    if obj.get("md5Hash"):
        hashes.append("md5=" + obj["md5Hash"])
    if hashes:
        h.append(("x-goog-hash", ",".join(hashes)))
    return h


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-gcs-shim"
    sys_version = ""

    # ---- plumbing -------------------------------------------------------------------
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def send_simple(self, status, body=b"", headers=(), content_type=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if content_type and body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_xml(self, status, xml, headers=()):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
        self.send_simple(status, body, headers, "application/xml")

    def send_error_xml(self, err):
        self.send_xml(err.status, "<Error><Code>%s</Code><Message>%s</Message></Error>"
                      % (xml_escape(err.code), xml_escape(err.message)))

    def body_chunks(self):
        """Yield the request body (Content-Length or chunked), without buffering it all."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = size
                while left:
                    buf = self.rfile.read(min(left, CHUNK))
                    if not buf:
                        raise ShimError(400, "IncompleteBody", "truncated chunked body")
                    left -= len(buf)
                    yield buf
                self.rfile.readline(65537)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                buf = self.rfile.read(min(left, CHUNK))
                if not buf:
                    raise ShimError(400, "IncompleteBody", "truncated body")
                left -= len(buf)
                yield buf

    def spool_body(self, path=None):
        """Body -> file (named `path`, or an anonymous temp file). Returns (file, len, md5hex)."""
        if path:
            f = open(path, "w+b")
        else:
            f = tempfile.TemporaryFile(dir=PARTS_DIR)
        md5, n = hashlib.md5(), 0
        for buf in self.body_chunks():
            f.write(buf)
            md5.update(buf)
            n += len(buf)
        f.flush()
        return f, n, md5.hexdigest()

    def drain_body(self):
        for _ in self.body_chunks():
            pass

    # ---- dispatch -------------------------------------------------------------------
    def parse(self):
        raw_path, _, query = self.path.partition("?")
        self.raw_path, self.query_str = raw_path, query
        self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
        self.bucket = self.name = None
        seg = raw_path.lstrip("/")
        if raw_path.startswith("/") and seg and not re.match(
                r"^(storage|upload|download|batch|_internal)/", seg + "/"):
            b, _, o = seg.partition("/")
            self.bucket = urllib.parse.unquote(b, errors="strict")
            self.name = urllib.parse.unquote(o, errors="strict") if o else None

    def send_response_only(self, code, message=None):
        self.response_started = True
        super().send_response_only(code, message)

    def handle_any(self):
        self.response_started = False
        if self.path == "/_ferry_shim/health":  # GCS bucket names cannot start with "_"
            self.drain_body()
            return self.send_simple(200, ("ferry-gcs-shim upstream=%s:%d\n" % UPSTREAM).encode(),
                                    content_type="text/plain")
        try:
            self.parse()
        except UnicodeDecodeError:
            self.drain_body()
            return self.send_error_xml(ShimError(400, "InvalidURI", "path is not valid UTF-8"))
        m, qy, obj = self.command, self.query, self.name
        try:
            if obj and m == "PUT" and "uploadId" in qy:
                return self.put_part()
            if obj and m == "PUT" and self.headers.get("x-goog-copy-source"):
                return self.copy_object()
            if obj and m == "PUT":
                return self.put_object()
            if obj and m == "POST" and "uploads" in qy:
                return self.initiate()
            if obj and m == "POST" and "uploadId" in qy:
                return self.complete()
            if obj and m == "DELETE" and "uploadId" in qy:
                return self.abort()
            if self.bucket and m == "GET" and ("uploadId" in qy or "uploads" in qy):
                self.drain_body()
                raise ShimError(501, "NotImplemented",
                                "listing multipart uploads/parts is not implemented by the shim")
            return self.forward()
        except ShimError as e:
            self.send_error_xml(e)
        except (http.client.HTTPException, OSError) as e:
            self.close_connection = True
            if self.response_started:
                return  # too late for an error response; dropping the connection tells it
            try:
                self.send_error_xml(ShimError(502, "BadGateway", f"fake-gcs-server: {e!r}"))
            except OSError:
                pass
        except Exception as e:  # a shim bug: answer 500 (never hang the client), log it
            import traceback
            traceback.print_exc()
            self.close_connection = True
            if not self.response_started:
                try:
                    self.send_error_xml(ShimError(500, "InternalError", f"gcs_shim: {e!r}"))
                except OSError:
                    pass

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = handle_any

    # ---- byte-for-byte forwarding --------------------------------------------------
    def forward(self):
        conn = upstream_conn()
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked_in = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            # Host is the one header rewritten: fake-gcs-server routes XML-API paths
            # (/BUCKET/OBJECT) only when Host equals its -public-host (127.0.0.1:4443).
            conn.putheader("Host", "%s:%d" % UPSTREAM)
            for k, v in self.headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() != "host":
                    conn.putheader(k, v)
            if chunked_in:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for buf in self.body_chunks():
                conn.send(b"%x\r\n%s\r\n" % (len(buf), buf) if chunked_in else buf)
            if chunked_in:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            self.send_response_only(resp.status, resp.reason)
            has_length = False
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in HOP_BY_HOP:
                    continue
                if lk == "content-length":
                    has_length = True
                self.send_header(k, v)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            chunked_out = not has_length and not no_body
            if chunked_out:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            while True:
                buf = resp.read(CHUNK)
                if not buf:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(buf), buf) if chunked_out else buf)
            if chunked_out:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            conn.close()

    # ---- translated writes ---------------------------------------------------------
    def put_object(self):
        resource = object_resource(self.headers, self.name)
        f, n, _ = self.spool_body()
        with f, object_lock(self.bucket, self.name):
            check_precondition(self.headers, self.bucket, self.name)
            obj = upload_object(self.bucket, resource, [f], n)
        self.send_simple(200, headers=object_headers(obj))

    def copy_object(self):
        self.drain_body()
        src = self.headers["x-goog-copy-source"].strip().lstrip("/")
        sb, _, so = src.partition("/")
        try:
            sb = urllib.parse.unquote(sb, errors="strict")
            so = urllib.parse.unquote(so, errors="strict")
        except UnicodeDecodeError:
            raise ShimError(400, "InvalidArgument", "x-goog-copy-source is not valid UTF-8")
        if not sb or not so:
            raise ShimError(400, "InvalidArgument", "x-goog-copy-source must be BUCKET/OBJECT")
        path = f"/storage/v1/b/{q(sb)}/o/{q(so)}/copyTo/b/{q(self.bucket)}/o/{q(self.name)}"
        gen = self.headers.get("x-goog-copy-source-generation")
        if gen:
            path += "?sourceGeneration=" + q(gen.strip())
        body = b""
        if self.headers.get("x-goog-metadata-directive", "COPY").strip().upper() == "REPLACE":
            body = object_resource(self.headers, self.name)
        with object_lock(self.bucket, self.name):
            check_precondition(self.headers, self.bucket, self.name)
            status, obj, raw = upstream_json("POST", path, body=body,
                                             headers={"Content-Type": "application/json"})
        if status != 200:
            raise upstream_error(status, raw)
        self.send_xml(200, "<CopyObjectResult><LastModified>%s</LastModified>"
                           "<ETag>\"%s\"</ETag></CopyObjectResult>"
                      % (xml_escape(obj.get("updated", "")), xml_escape(obj.get("etag", ""))),
                      headers=object_headers(obj))

    def upload_dir(self):
        uid = (self.query.get("uploadId") or [""])[0]
        if not re.fullmatch(r"[0-9a-f]{32}", uid):
            raise ShimError(404, "NoSuchUpload", "The specified multipart upload does not exist.")
        d = os.path.join(PARTS_DIR, uid)
        try:
            with open(os.path.join(d, "upload.json")) as fh:
                info = json.load(fh)
        except FileNotFoundError:
            raise ShimError(404, "NoSuchUpload", "The specified multipart upload does not exist.")
        if info["bucket"] != self.bucket or info["resource"]["name"] != self.name:
            raise ShimError(400, "InvalidArgument", "uploadId belongs to another object")
        return uid, d, info

    def initiate(self):
        self.drain_body()
        status, _, raw = upstream_json("GET", f"/storage/v1/b/{q(self.bucket)}")
        if status == 404:
            raise ShimError(404, "NoSuchBucket", "The specified bucket does not exist.")
        if status != 200:
            raise upstream_error(status, raw)
        uid = uuid.uuid4().hex
        d = os.path.join(PARTS_DIR, uid)
        os.makedirs(d)
        info = {"bucket": self.bucket, "resource": object_resource(self.headers, self.name),
                "if_generation_match": self.headers.get("x-goog-if-generation-match")}
        with open(os.path.join(d, "upload.json"), "w") as fh:
            json.dump(info, fh)
        self.send_xml(200, '<InitiateMultipartUploadResult xmlns="%s"><Bucket>%s</Bucket>'
                           "<Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                      % (S3_NS, xml_escape(self.bucket), xml_escape(self.name), uid))

    def put_part(self):
        try:
            uid, d, _ = self.upload_dir()
            pn = int((self.query.get("partNumber") or ["x"])[0])
            if not 1 <= pn <= MAX_PART_NUMBER:
                raise ValueError
        except ValueError:
            self.drain_body()
            raise ShimError(400, "InvalidArgument", "partNumber must be an integer 1..10000")
        except ShimError:
            self.drain_body()
            raise
        final = os.path.join(d, "part-%05d" % pn)
        tmp = final + ".tmp-" + uuid.uuid4().hex
        f, n, md5hex = self.spool_body(tmp)
        f.close()
        with open(final + ".etag.tmp", "w") as fh:
            fh.write(md5hex)
        os.replace(tmp, final)
        os.replace(final + ".etag.tmp", final + ".etag")
        self.send_simple(200, headers=[("ETag", '"%s"' % md5hex)])

    def complete(self):
        body = b"".join(self.body_chunks())
        uid, d, info = self.upload_dir()
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise ShimError(400, "MalformedXML", f"CompleteMultipartUpload body: {e}")
        parts = []
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] != "Part":
                continue
            fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in el}
            try:
                parts.append((int(fields["PartNumber"]), fields.get("ETag", "").strip('"')))
            except (KeyError, ValueError):
                raise ShimError(400, "MalformedXML", "Part without a valid PartNumber")
        if not parts:
            raise ShimError(400, "MalformedXML", "CompleteMultipartUpload lists no parts")
        if any(b[0] <= a[0] for a, b in zip(parts, parts[1:])):
            raise ShimError(400, "InvalidPartOrder", "parts must be listed in ascending order")
        files, total = [], 0
        for i, (pn, etag) in enumerate(parts):
            path = os.path.join(d, "part-%05d" % pn)
            try:
                with open(path + ".etag") as fh:
                    stored = fh.read().strip()
                size = os.path.getsize(path)
            except FileNotFoundError:
                raise ShimError(400, "InvalidPart", f"part {pn} was not uploaded")
            if etag and etag != stored:
                raise ShimError(400, "InvalidPart", f"part {pn}: ETag {etag} != {stored}")
            if i < len(parts) - 1 and size < MIN_PART:
                raise ShimError(400, "EntityTooSmall",
                                f"part {pn} is {size} bytes; all but the last must be >= 5 MiB")
            files.append(path)
            total += size
        cond = self.headers.get("x-goog-if-generation-match") or info.get("if_generation_match")
        with object_lock(self.bucket, self.name):
            if cond is not None:
                check_precondition({"x-goog-if-generation-match": cond}, self.bucket, self.name)
            obj = upload_object(self.bucket, info["resource"], files, total)
        shutil.rmtree(d, ignore_errors=True)
        self.send_xml(200, '<CompleteMultipartUploadResult xmlns="%s"><Location>%s</Location>'
                           "<Bucket>%s</Bucket><Key>%s</Key><ETag>\"%s\"</ETag>"
                           "</CompleteMultipartUploadResult>"
                      % (S3_NS,
                         xml_escape("http://%s:%d/%s/%s" % (*self.server.server_address[:2],
                                                            q(self.bucket), q(self.name))),
                         xml_escape(self.bucket), xml_escape(self.name),
                         xml_escape(obj.get("etag", ""))),
                      headers=object_headers(obj))

    def abort(self):
        self.drain_body()
        _, d, _ = self.upload_dir()
        shutil.rmtree(d, ignore_errors=True)
        self.send_simple(204)


def main():
    global UPSTREAM, PARTS_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:4444")
    ap.add_argument("--upstream", default="127.0.0.1:4443")
    ap.add_argument("--state-dir", default=os.environ.get(
        "FERRY_TEST_STATE", os.path.expanduser("~/.cache/ferry-test-servers")))
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    uh, up = a.upstream.rsplit(":", 1)
    UPSTREAM = (uh, int(up))
    PARTS_DIR = os.path.join(a.state_dir, "gcs-shim-parts")
    os.makedirs(PARTS_DIR, exist_ok=True)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    sys.stderr.write(f"gcs_shim: listening on http://{host}:{port}, upstream "
                     f"http://{uh}:{up}, multipart parts in {PARTS_DIR}\n")
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
