#!/usr/bin/env python3
"""Renders the README's support table from the rows the tests recorded.

    python3 scripts/support-table.py [--results FILE] [--readme FILE] [--stdout]

Each line of the results file (default: $DIND_INIT_RESULTS, else
target/support-results.jsonl) is one JSON object written by a test run:
tests/matrix.rs (Docker 20.10 / 26.1 / 28.5, gVisor and host namespaces) and the
cgroup v2 VM tests write them in the same format:

    {"docker": "28.5.2", "runtime": "gvisor" | "runc-host" | ...,
     "host_cgroup": "v1" | "v2", "init": "pid1" | "subreaper" | ...,
     "checks": {"ready": true, "run": false, ...},
     "result": "ok" | "known-limit" | "fail", "note": "...",
     optional: "suite", "runc", "runsc", "ready_ms"}

For each (docker, runtime, host_cgroup, init) the last row wins, so a file that
collects several runs gives the newest results. The table replaces what lies between
`<!-- support-table:begin -->` and `<!-- support-table:end -->` in the README (or is
printed with --stdout). Fails when the file has no rows or the markers are missing.
"""

import argparse
import json
import os
import sys

BEGIN = "<!-- support-table:begin -->"
END = "<!-- support-table:end -->"

# The checks, in column order; a column appears when some row has its check.
CHECKS = [
    ("ready", "ready"),
    ("run", "`docker run`"),
    ("build", "`docker build`"),
    ("user_network_dns", "names on a user network"),
    ("memory_limit", "`docker run -m` enforced"),
    ("stop", "stop (exit 0)"),
]
RUNTIMES = {
    "gvisor": "gVisor",
    "runc-host": "runc, host namespaces",
}
INITS = {
    "pid1": "PID 1",
    "pid1-vm": "PID 1 of the machine",
    "subreaper": "subreaper (not PID 1)",
    "pid1-cgroupns": "PID 1, own cgroup namespace",
    "child-cgroupns": "child of docker-init (`--init`)",
}
RESULTS = {"ok": "works", "known-limit": "known limit", "fail": "**fails**"}


def version_key(v):
    parts = []
    for p in str(v).split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return parts


def load(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"support-table: {path}:{n}: not JSON: {e}")
            for key in ("docker", "runtime", "host_cgroup", "init", "checks", "result"):
                if key not in row:
                    sys.exit(f"support-table: {path}:{n}: no {key!r}")
            rows[(row["docker"], row["runtime"], row["host_cgroup"], row["init"])] = row
    return list(rows.values())


def render(rows):
    rows.sort(
        key=lambda r: (
            version_key(r["docker"]),
            r["runtime"] != "gvisor",
            r["runtime"],
            r["host_cgroup"],
            r["init"] != "pid1",
            r["init"],
        )
    )
    notes = []  # (note, [row labels])

    def note_ref(row):
        note = row.get("note", "").strip()
        if not note:
            return ""
        for i, (text, _) in enumerate(notes):
            if text == note:
                return f" [{i + 1}]"
        notes.append((note, None))
        return f" [{len(notes)}]"

    checks_shown = [(k, label) for k, label in CHECKS if any(k in r["checks"] for r in rows)]
    head = ["Docker", "runc", "environment", "host cgroup", "dind-init as"]
    head += [label for _, label in checks_shown]
    head += ["result", "time to ready"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        runtime = RUNTIMES.get(r["runtime"], r["runtime"])
        if r["runtime"] == "gvisor" and r.get("runsc"):
            runtime += f" (runsc {r['runsc']})"
        docker = r["docker"] + (f" ({r['suite']})" if r.get("suite") else "")
        checks = r["checks"]
        marks = []
        for key, _ in checks_shown:
            value = checks.get(key)
            marks.append("yes" if value is True else "no" if value is False else "-")
        ready = r.get("ready_ms")
        ready = f"{ready / 1000:.1f} s" if isinstance(ready, (int, float)) else "-"
        cells = [
            docker,
            r.get("runc", "-"),
            runtime,
            r["host_cgroup"],
            INITS.get(r["init"], r["init"]),
            *marks,
            RESULTS.get(r["result"], r["result"]) + note_ref(r),
            ready,
        ]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if notes:
        out.append("")
        for i, (text, _) in enumerate(notes):
            out.append(f"[{i + 1}] {text}")
            out.append("")
        out.pop()
    return "\n".join(out)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--results",
        default=os.environ.get("DIND_INIT_RESULTS")
        or os.path.join(repo, "target", "support-results.jsonl"),
    )
    p.add_argument("--readme", default=os.path.join(repo, "README.md"))
    p.add_argument("--stdout", action="store_true", help="print the table, change nothing")
    args = p.parse_args()

    if not os.path.exists(args.results):
        sys.exit(f"support-table: no results at {args.results}: run `cargo test --test matrix` first")
    rows = load(args.results)
    if not rows:
        sys.exit(f"support-table: {args.results} has no rows")
    table = render(rows)
    if args.stdout:
        print(table)
        return
    with open(args.readme, encoding="utf-8") as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        sys.exit(f"support-table: {args.readme} needs one {BEGIN} ... {END} pair")
    before = text[: text.index(BEGIN) + len(BEGIN)]
    after = text[text.index(END):]
    new = f"{before}\n{table}\n{after}"
    if new != text:
        with open(args.readme, "w", encoding="utf-8") as f:
            f.write(new)
    print(f"support-table: {len(rows)} rows from {args.results} into {args.readme}")


if __name__ == "__main__":
    main()
