#!/usr/bin/env python3
"""The server crate's module dependency graph, and a check that it has no cycles.

Every `crate::a::b` (and `super::x`) a module's code names is an edge from that module to
the module it names. Modules are taken at two levels: a top-level module (`command`), or a
module inside a directory module (`dialect::nt`, `http::api`); a directory module's own
file (`dialect/mod.rs`) is the node `dialect`. A child naming its parent is not counted (a
child may use what its parent defines). Exits 1 and prints the cycle if there is one.

    scripts/module-graph.py            # check; prints the graph with --print
    scripts/module-graph.py --dot      # the graph in Graphviz form
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "switchboard", "src")
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)


def node_of(relpath):
    """`dialect/nt.rs` -> `dialect::nt`; `dialect/mod.rs` -> `dialect`; `lib.rs` -> None."""
    parts = relpath[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return None
    return "::".join(parts[:2])


def resolve(base, names):
    """The node `base::names…` falls in, at two levels."""
    parts = base + names
    for depth in (2, 1):
        cand = parts[:depth]
        if len(cand) < depth:
            continue
        p = os.path.join(ROOT, *cand)
        if os.path.isfile(p + ".rs") or os.path.isdir(p):
            return "::".join(cand)
    return None


def strip_tests(src):
    """Drops `#[cfg(test)] mod tests { … }` (tests may use anything) and comments (a doc
    link is not a dependency)."""
    i = src.find("#[cfg(test)]\nmod tests")
    src = src if i < 0 else src[:i]
    lines = []
    for line in src.splitlines():
        if line.lstrip().startswith("//"):
            continue
        lines.append(re.sub(r"\s//\s.*$", "", line))
    return "\n".join(lines)


def edges():
    graph = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
            me = node_of(rel)
            if me is None:
                continue
            src = strip_tests(open(os.path.join(dirpath, f)).read())
            # The module `super` refers to, as a path from the crate root.
            here = me.split("::")
            is_dir_mod = f == "mod.rs"
            parent = here if is_dir_mod else here[:-1]
            if is_dir_mod:
                parent = here[:-1]
            targets = set()
            for m in USE_GROUP.finditer(src):
                base = [] if m.group(1) == "crate" else parent
                for item in re.split(r",\s*", m.group(2)):
                    name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", item)
                    if name and name.group(1) not in ("self",):
                        t = resolve(base, [name.group(1)] + re.findall(r"::([A-Za-z_]\w*)", item)[:1])
                        if t:
                            targets.add(t)
            for m in PATH.finditer(src):
                if m.group(2) == "::{":
                    continue
                base = [] if m.group(1) == "crate" else parent
                names = [n for n in m.group(2).split("::") if n]
                t = resolve(base, names)
                if t:
                    targets.add(t)
            targets.discard(me)
            # A child may use its parent (and the parent's other children through it).
            targets = {t for t in targets if not me.startswith(t + "::")}
            graph.setdefault(me, set()).update(targets)
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if state.get(m) is None:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None:
            c = visit(n)
            if c:
                return c
    return None


def main():
    graph = edges()
    if "--dot" in sys.argv:
        print("digraph switchboard {")
        for n in sorted(graph):
            for m in sorted(graph[n]):
                print(f'  "{n}" -> "{m}";')
        print("}")
        return 0
    if "--print" in sys.argv:
        for n in sorted(graph):
            print(f"{n:24} -> {', '.join(sorted(graph[n]))}")
    cycle = find_cycle(graph)
    if cycle:
        print("module import cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    print(f"module graph: {len(graph)} modules, {sum(len(v) for v in graph.values())} edges, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
