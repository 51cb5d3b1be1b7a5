#!/usr/bin/env python3
"""Fails when a target imports one of this package's own modules that is not in its dependency closure.

SwiftPM orders a parallel build by the declared dependencies only: a target that imports a sibling module it does
not (even transitively) depend on compiles fine whenever that module happens to be built first, and fails with
"no such module" when it is not. That race is invisible on a warm build directory and broke a fresh-clone CI once
(OperationsTests importing IMClient). This check reads Package.swift and the sources and takes under a second.

    python3 scripts/check-imports.py        (from the repository root; exit 1 and a list when something is missing)
"""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
manifest = open(os.path.join(root, "Package.swift")).read()

# Each target declaration: its name and the quoted names in its dependencies (target names and products alike).
deps = {}
for block in re.split(r"\.(?:testTarget|target|executableTarget|systemLibrary)\(", manifest)[1:]:
    name = re.search(r'name:\s*"([^"]+)"', block)
    if not name:
        continue
    listed = re.search(r"dependencies:\s*\[(.*?)\]\s*(?:,\s*\w+:|\))", block, re.S)
    deps[name.group(1)] = set(re.findall(r'"([A-Za-z0-9_]+)"', listed.group(1))) if listed else set()

ours = set(deps)


def closure(target):
    seen, todo = set(), [target]
    while todo:
        for d in deps.get(todo.pop(), ()):
            if d in ours and d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


problems = []
for target in sorted(deps):
    for base in ("Sources", "Tests"):
        path = os.path.join(root, base, target)
        if not os.path.isdir(path):
            continue
        reachable = closure(target)
        for dirpath, _, files in os.walk(path):
            for f in files:
                if not f.endswith(".swift"):
                    continue
                file = os.path.join(dirpath, f)
                for line_no, line in enumerate(open(file, encoding="utf-8"), 1):
                    m = re.match(r"\s*(?:@testable\s+|@_exported\s+|(?:public|internal|package)\s+)?import\s+(\w+)", line)
                    if m and m.group(1) in ours and m.group(1) != target and m.group(1) not in reachable:
                        problems.append(f"{os.path.relpath(file, root)}:{line_no}: {target} imports {m.group(1)}, "
                                        f"which is not among its dependencies in Package.swift (add \"{m.group(1)}\")")

if problems:
    print("check-imports: a target imports a module of this package it does not depend on; a parallel build may "
          "compile it first and fail with \"no such module\":", file=sys.stderr)
    for p in problems:
        print("  " + p, file=sys.stderr)
    sys.exit(1)
print(f"check-imports: {len(deps)} targets, every import of our own modules is a declared dependency")
