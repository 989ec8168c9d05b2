#!/usr/bin/env python3
"""A minimal EC2 instance metadata service (IMDSv2) for ferry's credential tests (issue 16).

Serves one role's credentials, read from the JSON file given (AccessKeyId, SecretAccessKey,
Token, Expiration), to clients that first PUT /latest/api/token and then send the token back,
as the AWS SDKs do with IMDSv2. Prints `listening on 127.0.0.1:PORT` first; counts credential
reads in GET /__imds.

  python3 tests/servers/imds.py --creds FILE [--port 0]
"""

import argparse
import json
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = "ferry-test-role"
PREFIX = "/latest/meta-data/iam/security-credentials/"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creds", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    token = secrets.token_hex(16)
    served = {"credentials": 0, "tokens": 0}

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body, ctype="text/plain"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            if self.path == "/latest/api/token" and self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                served["tokens"] += 1
                self.send_response(200)
                self.send_header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                self.send_header("Content-Length", str(len(token)))
                self.end_headers()
                self.wfile.write(token.encode())
            else:
                self.reply(400, "bad token request")

        def do_GET(self):
            if self.path == "/__imds":
                return self.reply(200, json.dumps(served), "application/json")
            # IMDSv2 only: no token, no answer.
            if self.headers.get("x-aws-ec2-metadata-token") != token:
                return self.reply(401, "")
            if self.path == PREFIX:
                return self.reply(200, ROLE)
            if self.path == PREFIX + ROLE:
                with open(args.creds) as f:
                    c = json.load(f)
                served["credentials"] += 1
                c.update({"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": "2026-01-01T00:00:00Z"})
                return self.reply(200, json.dumps(c), "application/json")
            self.reply(404, "")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
