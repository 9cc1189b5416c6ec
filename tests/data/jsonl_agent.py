"""A JSON-lines agent for `--target cmd:` tests.

Flags: --crash-on-turn N (write to stderr and exit 3 on turn N), --garbage (answer with a line
that is not JSON), --sleep S (sleep S seconds before each answer), --linger (stay alive after
stdin closes), --ignore-term (ignore SIGTERM), --api-key K (a credential, quoted in the crash
message), --spawn PIDFILE (start a grandchild `sleep`; write both pids to PIDFILE on the
first request).
"""

import argparse
import json
import os
import signal
import sys
import time

from agent_replies import make_reply

parser = argparse.ArgumentParser()
parser.add_argument("--crash-on-turn", type=int)
parser.add_argument("--garbage", action="store_true")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--linger", action="store_true")
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--api-key")
parser.add_argument("--spawn")
args = parser.parse_args()
if args.spawn:
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

for line in sys.stdin:
    request = json.loads(line)
    if args.spawn and not os.path.exists(args.spawn):  # written once a request arrived
        with open(args.spawn, "w") as pids:
            pids.write(f"{os.getpid()} {child.pid}\n")
    turn = sum(1 for m in request["messages"] if m["role"] == "user")
    print(f"got turn {turn}", file=sys.stderr, flush=True)
    if turn == args.crash_on_turn:
        key = f" with key {args.api_key}" if args.api_key else ""
        print(f"boom: crashed on turn {turn}{key}", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.garbage:
        print("hello, I am not JSON", flush=True)
        continue
    time.sleep(args.sleep)
    who = f"session {request['session_id']} pid {os.getpid()}"
    print(json.dumps(make_reply(request["messages"], who)), flush=True)

while args.linger:
    time.sleep(1)
