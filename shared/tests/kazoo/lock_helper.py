#!/usr/bin/env python3
"""A kazoo Lock driven line by line over stdin/stdout, for the Rust interop tests.

Usage: lock_helper.py HOSTS LOCK_PATH IDENTIFIER
Prints "ready" once connected, then answers one line per command:
  try              -> True/False   (acquire(blocking=False))
  acquire [SECS]   -> True/False   (blocking acquire, False on LockTimeout)
  release          -> released
  contenders       -> JSON list of identifiers (Lock.contenders())
  quit             -> (stops the client and exits)
Exits with status 3 and prints NO_KAZOO if kazoo is not importable.
"""
import json
import sys

try:
    from kazoo.client import KazooClient
    from kazoo.exceptions import LockTimeout
except ImportError:
    print("NO_KAZOO", flush=True)
    sys.exit(3)


def main():
    hosts, path, identifier = sys.argv[1:4]
    zk = KazooClient(hosts=hosts, timeout=10.0)
    zk.start(timeout=30)
    lock = zk.Lock(path, identifier)
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "try":
                out = str(lock.acquire(blocking=False))
            elif cmd[0] == "acquire":
                timeout = float(cmd[1]) if len(cmd) > 1 else None
                try:
                    out = str(lock.acquire(timeout=timeout))
                except LockTimeout:
                    out = "False"
            elif cmd[0] == "release":
                lock.release()
                out = "released"
            elif cmd[0] == "contenders":
                out = json.dumps(lock.contenders())
            elif cmd[0] == "quit":
                break
            else:
                out = "unknown command " + cmd[0]
            print(out, flush=True)
    finally:
        zk.stop()
        zk.close()


if __name__ == "__main__":
    main()
