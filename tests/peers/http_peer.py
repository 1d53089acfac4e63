"""A tiny HTTP server process that misbehaves on request, for the supervisor's tests.

It stands in for any engine server (Ollama, VibeVoice, a whisper.cpp server): it listens on a
port, answers ``GET /health`` with 200 and VibeVoice's body ``{"status": "ok", "model_loaded":
...}`` and ``GET /ready`` with 503 until it is ready, then 200; and it
can be told to be slow to get ready, to crash, to ignore SIGTERM, to flood its pipes, or to leave
a grandchild in its process group. Standard library only, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

STARTED = time.monotonic()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0, help="not ready until then")
    parser.add_argument("--crash-after", type=float, default=None, help="exit this soon")
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--chatty", type=int, default=0, help="bytes to write to each pipe first")
    parser.add_argument("--long-line", type=int, default=0, help="one line of this many bytes")
    parser.add_argument("--lines", type=int, default=0, help="numbered lines to print first")
    parser.add_argument("--spawn-child", action="store_true", help="leave a grandchild running")
    return parser.parse_args()


def say(text: str) -> None:
    with contextlib.suppress(BrokenPipeError):  # our reader is gone (an orphan): keep serving
        print(text, flush=True)


def main() -> None:
    args = parse()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: say("ignoring SIGTERM"))
    for number in range(args.lines):
        say(f"line {number}")
    if args.chatty:
        row = "x" * 99 + "\n"
        for _ in range(args.chatty // 100):
            sys.stdout.write(row)
            sys.stderr.write(row)
        sys.stdout.flush()
    if args.long_line:
        sys.stdout.write("y" * args.long_line + "\n")
        sys.stdout.flush()
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        say(f"grandchild pid {child.pid}")
    if args.crash_after is not None:

        def crash() -> None:
            say(f"boom: crashing with code {args.exit_code}")
            os._exit(args.exit_code)

        if args.crash_after <= 0:
            crash()
        threading.Timer(args.crash_after, crash).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ready = time.monotonic() - STARTED >= args.ready_after
            body = json.dumps({"status": "ok", "model_loaded": ready}).encode()
            self.send_response(503 if self.path == "/ready" and not ready else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    say(f"peer pid {os.getpid()} listening on {args.port}")
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
