#!/usr/bin/env python3
"""A stand-in for the GCE metadata server's token endpoint, for tests (issue 16).

On a GCE VM, a GKE pod with workload identity or Cloud Run, Google's libraries (object_store
included) get an OAuth token from
`http://METADATA/computeMetadata/v1/instance/service-accounts/default/token` with the header
`Metadata-Flavor: Google`. object_store reads the host from `GCE_METADATA_HOST`. This server
answers that one request (refusing it without the header, as the real one does) with a token
`ya29.ferry-test-N`, N counting the tokens handed out.

Usage: gce_metadata.py. Prints `listening 127.0.0.1:PORT`, then serves until killed.
`GET /__tokens` answers the number of tokens handed out.
"""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = 0
PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global TOKENS
        if self.path == "/__tokens":
            self.reply(200, {"tokens": TOKENS})
        elif self.path.split("?")[0] != PATH:
            self.reply(404, {"error": "not found"})
        elif self.headers.get("Metadata-Flavor") != "Google":
            self.reply(403, {"error": "Missing Metadata-Flavor:Google header"})
        else:
            TOKENS += 1
            self.reply(200, {"access_token": f"ya29.ferry-test-{TOKENS}", "expires_in": 3599, "token_type": "Bearer"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
