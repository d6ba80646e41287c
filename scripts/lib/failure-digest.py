#!/usr/bin/env python3
"""Prints, from `cargo test` logs, what each failed test printed around its panic.

run-tests prints every lane's whole log and clippy's after it, so on a long run (CI
keeps only the start and the end of the output) the `failures:` section of a lane sits
in the middle and is lost. This digest comes last: per failed test its name, the lines
it printed just before the panic (daemon logs, wait messages) and the panic itself.

Usage: failure-digest.py LOG...   (prints nothing when no test failed)
"""
import re
import sys

BEFORE = 25  # lines kept before a panic
AFTER = 8  # the panic message and the first lines of its backtrace
HEADER = re.compile(r"^---- (\S+) (stdout|stderr) ----$")


def blocks(lines):
    """Yields (test name, its lines) for each `---- name stdout ----` block."""
    name, body = None, []
    for line in lines:
        m = HEADER.match(line)
        if m or line in ("failures:", "successes:") or line.startswith("test result:"):
            if name is not None:
                yield name, body
            name, body = (m.group(1), []) if m else (None, [])
            continue
        if name is not None:
            body.append(line)
    if name is not None:
        yield name, body


def digest(name, body):
    panics = [i for i, line in enumerate(body) if "panicked at" in line]
    if not panics:
        keep = body[-BEFORE:]
    else:
        first = panics[0]
        keep = body[max(0, first - BEFORE) : first + AFTER]
    return [f"---- {name} ----"] + keep


def main():
    out = []
    for path in sys.argv[1:]:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        # Only the blocks of the `failures:` section (the first listing of them).
        for name, body in blocks(lines):
            out.extend(digest(name, body))
    if out:
        print("\n".join(out))


if __name__ == "__main__":
    main()
