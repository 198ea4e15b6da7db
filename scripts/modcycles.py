#!/usr/bin/env python3
"""Reports import cycles between the modules (files) of Rust crates; exit 1 if there is one.

    python3 scripts/modcycles.py [CRATE_DIR ...]    (default: every ./*/ with a src/)

For each crate it walks the module tree from src/lib.rs, src/main.rs and src/bin/*.rs along
`mod x;` declarations, then reads every path in code (comments and strings stripped) that
starts with `crate::`, `super::`, `self::`, a child module or a name a `use` bound, e.g.
`use super::{batch, Shared}`, `crate::job::Entry`, `read::read_loop(..)`. Each path is resolved
to the file that defines its target; a name re-exported by `use` (`crate::QueueError` via
lib.rs's `pub use error::QueueError`) resolves to where it comes from. Declaring a child
(`mod x;`) is not a dependency; using it is. Paths inside an inline module (`mod tests { }`)
count for the file that holds it. Macros, `#[path]` and `include!` are not followed.
"""
import re
import sys
from pathlib import Path

TOKEN = re.compile(r"r#?\w+|[A-Za-z_]\w*|::|[{}(),;*]|\S")
STRIP = re.compile(
    r'//[^\n]*|/\*.*?\*/|b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|b?\'(?:\\u\{\w+\}|\\.|[^\\\'])\'',
    re.S,
)
KEYWORDS = {"crate", "super", "self"}


def blank(m):
    return re.sub(r"[^\n]", " ", m.group(0))  # keep line numbers


def tokens(text):
    text = STRIP.sub(blank, text)
    for n, line in enumerate(text.split("\n"), 1):
        for t in TOKEN.findall(line):
            yield n, t


class Module:
    def __init__(self, path, file, parent):
        self.path, self.file, self.parent = path, file, parent
        self.children = {}  # name -> Module
        self.uses = {}  # bound name -> (Module where written, [segments])
        self.refs = []  # (Module, [segments], line)


def child_file(module, name):
    f = module.file
    base = f.parent if module.parent is None or f.name == "mod.rs" else f.with_suffix("")
    for cand in (base / f"{name}.rs", base / name / "mod.rs"):
        if cand.exists():
            return cand
    return None


def parse(module, modules):
    toks = list(tokens(module.file.read_text(encoding="utf-8", errors="replace")))
    stack = [(module, 0)]  # inline modules and the brace depth they opened at
    depth, i = 0, 0
    while i < len(toks):
        line, t = toks[i]
        cur = stack[-1][0]
        if t == "mod" and i + 2 < len(toks) and toks[i + 2][1] in ";{":
            name = toks[i + 1][1]
            if toks[i + 2][1] == ";":
                f = child_file(cur, name)
                if f is not None:
                    child = Module(cur.path + [name], f, cur)
                    cur.children[name] = child
                    modules.append(child)
                    parse(child, modules)
                i += 3
            else:
                inline = Module(cur.path + [name], module.file, cur)
                cur.children[name] = inline
                modules.append(inline)
                depth += 1
                stack.append((inline, depth))
                i += 3
            continue
        if t == "{":
            depth += 1
        elif t == "}":
            if len(stack) > 1 and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        elif t == "use":
            i = parse_use(toks, i + 1, cur, [], line)
            continue
        elif re.match(r"[A-Za-z_]", t) and i + 1 < len(toks) and toks[i + 1][1] == "::":
            if i == 0 or toks[i - 1][1] not in ("::", "in"):  # not `pub(in crate::x)`
                segs, i = [t], i + 1
                while (
                    i + 1 < len(toks)
                    and toks[i][1] == "::"
                    and re.match(r"[A-Za-z_]", toks[i + 1][1])
                ):
                    segs.append(toks[i + 1][1])
                    i += 2
                cur.refs.append((cur, segs, line))
                continue
        i += 1


def parse_use(toks, i, cur, prefix, line):
    """Reads one use tree starting at toks[i]; records bindings and references."""
    segs = list(prefix)
    while i < len(toks):
        t = toks[i][1]
        if t == "{":
            i += 1
            while toks[i][1] != "}":
                i = parse_use(toks, i, cur, segs, line)
                if toks[i][1] == ",":
                    i += 1
            i += 1
            return i + 1 if i < len(toks) and toks[i][1] == ";" else i
        if t in (",", "}", ";"):
            break
        if t == "::":
            i += 1
            continue
        if t == "*":
            cur.refs.append((cur, segs + ["*"], line))
            i += 1
            continue
        if t == "as":
            alias = toks[i + 1][1]
            if alias != "_":
                cur.uses[alias] = (cur, segs)
            cur.refs.append((cur, segs, line))
            i += 2
            return i + 1 if toks[i][1] == ";" else i
        segs.append(t)
        i += 1
    if segs:
        name = segs[-1] if segs[-1] != "self" else segs[-2] if len(segs) > 1 else None
        if name:
            cur.uses[name] = (cur, segs)
        cur.refs.append((cur, segs, line))
    return i + 1 if i < len(toks) and toks[i][1] == ";" else i


def resolve(start, segs, root, seen=None):
    """The Module a path's target is defined in, or None (external crate, std, unknown)."""
    seen = seen or set()
    key = (id(start), tuple(segs))
    if key in seen:
        return None
    seen.add(key)
    m, rest = start, list(segs)
    if rest and rest[0] == "crate":
        m, rest = root, rest[1:]
    elif rest and rest[0] in ("super", "self"):
        while rest and rest[0] in ("super", "self"):
            if rest.pop(0) == "super":
                m = m.parent
                if m is None:
                    return None
    elif rest and rest[0] not in m.children and rest[0] not in m.uses:
        return None  # an external crate or a prelude name
    while rest and rest[0] not in ("*", "self"):
        name = rest[0]
        if name in m.children:
            m, rest = m.children[name], rest[1:]
        elif name in m.uses:
            where, target = m.uses[name]
            if target and target[0] == name and where is m:
                return None  # `use anyhow::{anyhow, ..}`: an external crate's item
            if len(seen) > 64:
                return None  # a chain of re-exports this long is not ours to follow
            found = resolve(where, target + rest[1:], root, seen)
            return found or m
        else:
            break
    return m


def crate_cycles(crate):
    src = crate / "src"
    roots = [src / "lib.rs", src / "main.rs"] + sorted((src / "bin").glob("*.rs"))
    edges = {}  # (from file, to file) -> first (line, path text)
    files = set()
    for rf in [r for r in roots if r.exists()]:
        root = Module([], rf, None)
        modules = [root]
        parse(root, modules)
        files.update(m.file for m in modules)
        for m in modules:
            for where, segs, line in m.refs:
                target = resolve(where, segs, root)
                if target is not None and target.file != m.file:
                    edges.setdefault((m.file, target.file), (line, "::".join(segs)))
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    return [scc for scc in sccs(graph) if len(scc) > 1], files, edges


def sccs(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], 0
    for v0 in sorted(graph):
        if v0 in index:
            continue
        work = [(v0, iter(sorted(graph[v0])))]
        index[v0] = low[v0] = n
        n += 1
        stack.append(v0)
        on.add(v0)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = n
                n += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def main(args):
    crates = [Path(a) for a in args]
    crates = crates or sorted(p for p in Path(".").iterdir() if (p / "src").is_dir())
    found = False
    for crate in crates:
        cycles, files, edges = crate_cycles(crate)
        rel = lambda f: str(f.relative_to(crate / "src"))
        print(f"{crate}: {len(files)} files, {len(edges)} dependencies, {len(cycles)} cycle(s)")
        for comp in cycles:
            found = True
            members = set(comp)
            print("  cycle among: " + ", ".join(rel(f) for f in comp))
            for (a, b), (line, path) in sorted(edges.items()):
                if a in members and b in members:
                    print(f"    {rel(a)}:{line} -> {rel(b)}  ({path})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
