#!/usr/bin/env python3
"""Summarises `make mutants` runs into build/mutants/SCORES.md.

For each crate with a run under OUT (OUT/<crate>/mutants.out, cargo-mutants' --output), counts
caught, missed, timeout and unviable mutants from cargo-mutants' caught.txt, missed.txt,
timeout.txt and unviable.txt, reads the wall time the Makefile wrote (OUT/<crate>/seconds), and
rewrites that crate's row of the table between the markers in SCORES.md. Rows of crates not run
this time are kept, so one crate can be re-measured alone (MUTANTS_CRATES=...).

Score = (caught + timeout) / viable, viable = caught + missed + timeout (a mutant that makes the
tests hang is detected: the tests do not pass). Unviable mutants do not build and count nowhere.

usage: scores.py OUT SCORES.md
"""

import datetime
import pathlib
import re
import subprocess
import sys

BEGIN = "<!-- scores:begin (build/mutants/scores.py rewrites this table) -->"
END = "<!-- scores:end -->"
HEADER = [
    "| crate | mutants | caught | missed | timeout | unviable | score | wall time | run |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
]


def lines(path):
    try:
        return [l for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def row(crate, d, version, today):
    n = {k: len(lines(d / "mutants.out" / f"{k}.txt")) for k in ("caught", "missed", "timeout", "unviable")}
    viable = n["caught"] + n["missed"] + n["timeout"]
    score = f"{100.0 * (n['caught'] + n['timeout']) / viable:.1f} %" if viable else "-"
    try:
        s = int((d / "seconds").read_text())
        wall = f"{s // 60} min {s % 60:02d} s"
    except (FileNotFoundError, ValueError):
        wall = "?"
    total = viable + n["unviable"]
    return (f"| {crate} | {total} | {n['caught']} | {n['missed']} | {n['timeout']} | {n['unviable']} "
            f"| {score} | {wall} | {today}, {version}, `--jobs 1` |")


def main():
    out, scores = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    text = scores.read_text() if scores.exists() else f"# Mutation scores\n\n{BEGIN}\n{END}\n"
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    if not m:
        sys.exit(f"{scores}: no table markers")
    rows = {}
    for l in m.group(1).splitlines():
        cells = [c.strip() for c in l.strip("|").split("|")]
        if l.startswith("|") and cells[0] not in ("crate", "---"):
            rows[cells[0]] = l
    version = subprocess.run(["cargo", "mutants", "--version"], capture_output=True, text=True).stdout.strip()
    today = datetime.date.today().isoformat()
    for d in sorted(out.iterdir()) if out.is_dir() else []:
        if (d / "mutants.out").is_dir():
            rows[d.name] = row(d.name, d, version, today)
    table = "\n".join(HEADER + [rows[c] for c in sorted(rows)])
    text = text[: m.start()] + f"{BEGIN}\n{table}\n{END}" + text[m.end():]
    scores.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
