#!/usr/bin/env python3
"""What kazoo does with a chroot that does not exist, for the Rust interop test.

Usage: chroot_helper.py HOSTS CHROOT
Connects to HOSTS + CHROOT, then prints one JSON object:
  warned        kazoo warned at start that the chroot does not exist
  list_nodes    children of /nodepool/nodes, or the exception name
  ensure_path   "ok" after ensure_path("/nodepool/images/img/pause"), or the exception name
  chroot_exists whether CHROOT exists afterwards (seen without chroot)
Exits with status 3 and prints NO_KAZOO if kazoo is not importable.
"""
import json
import sys
import warnings

try:
    from kazoo.client import KazooClient
except ImportError:
    print("NO_KAZOO", flush=True)
    sys.exit(3)


def attempt(f):
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - the exception name is the answer
        return type(e).__name__


def main():
    hosts, chroot = sys.argv[1:3]
    out = {}
    zk = KazooClient(hosts=hosts + chroot, timeout=10.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zk.start(timeout=30)
    out["warned"] = any("chroot" in str(w.message) for w in caught)
    out["list_nodes"] = attempt(lambda: zk.get_children("/nodepool/nodes"))

    def ensure():
        zk.ensure_path("/nodepool/images/img/pause")
        return "ok"

    out["ensure_path"] = attempt(ensure)
    zk.stop()
    zk.close()
    root = KazooClient(hosts=hosts, timeout=10.0)
    root.start(timeout=30)
    out["chroot_exists"] = root.exists(chroot) is not None
    root.stop()
    root.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
