#!/usr/bin/env python3
"""A stand-in for AWS STS's unsigned AssumeRoleWithWebIdentity, in front of moto-iam.

Real STS takes AssumeRoleWithWebIdentity unsigned (the web identity token is the proof); moto
with its IAM checks on answers 500 to any request without an Authorization header. This proxy
receives the unsigned call as the AWS SDK sends it, signs it with moto-iam's admin keys and
forwards it, so moto hands out credentials for the role named in the call, and S3 on moto-iam
then checks that role's policies. Any other action, or an already signed call, is refused
(400): the proxy only ever stands in for that one unsigned call.

Usage: sts_webid.py UPSTREAM ADMIN_KEY ADMIN_SECRET
Prints `listening 127.0.0.1:PORT` on stdout, then serves until killed. `GET /__calls` answers
the actions received, as JSON.
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UPSTREAM, KEY, SECRET = sys.argv[1:4]
CALLS = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body, kind="text/xml"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, json.dumps(CALLS).encode(), "application/json")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
        CALLS.append(action)
        if action != "AssumeRoleWithWebIdentity" or "Authorization" in self.headers:
            self.reply(400, b"<Error><Code>NotTheStandIn</Code></Error>")
            return
        url = UPSTREAM.rstrip("/") + "/"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(Credentials(KEY, SECRET), "sts", "us-east-1").add_auth(signed)
        request = urllib.request.Request(url, data=body, headers=dict(signed.headers), method="POST")
        try:
            with urllib.request.urlopen(request) as r:
                self.reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            self.reply(e.code, e.read())


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
