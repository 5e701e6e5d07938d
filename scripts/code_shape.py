#!/usr/bin/env python3
"""Code shape numbers for src/ (issue #13's before/after): lines of src/main.rs, the
largest files, and every function longer than LIMIT lines.

Usage: python3 scripts/code_shape.py [LIMIT=150] [ROOT=src]
Functions are found by `fn name(` at the start of a line and measured to their closing
brace by counting braces outside strings, chars and comments (good enough for rustfmt'd code).
"""
import os
import re
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 150
ROOT = sys.argv[2] if len(sys.argv) > 2 else "src"
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip(line):
    """The line without string/char literals and // comments (braces in them don't count)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            s = strip(lines[j])
            if not opened and ";" in s and "{" not in s:
                break  # a declaration without a body (trait method)
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if opened and depth <= 0:
                break
            j += 1
        if opened:
            out.append((m.group(6), i + 1, j - i + 1))
        i += 1
    return out


files = []
for d, _, names in os.walk(ROOT):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(d, n)
            files.append((sum(1 for _ in open(p, encoding="utf-8")), p))
files.sort(reverse=True)
main = os.path.join(ROOT, "main.rs")
print(f"src/main.rs: {sum(1 for _ in open(main, encoding='utf-8'))} lines")
print("largest files: " + ", ".join(f"{p} {n}" for n, p in files[:5]))
long = sorted(
    ((n, p, name, line) for _, p in files for name, line, n in functions(p) if n > LIMIT),
    reverse=True,
)
print(f"functions over {LIMIT} lines: {len(long)}")
for n, p, name, line in long:
    print(f"  {n:5} {p}:{line} {name}")
