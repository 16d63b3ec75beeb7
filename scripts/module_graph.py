#!/usr/bin/env python3
"""The module structure of a crate, drawn from its imports, and its circles.

    python3 scripts/module_graph.py crates/broker            # edges and circles
    python3 scripts/module_graph.py --dot crates/broker      # Graphviz
    python3 scripts/module_graph.py --check crates/broker crates/cli   # exit 1 on a circle
    python3 scripts/module_graph.py --depth 1 crates/broker  # top-level modules only

A node is a source file (a module). An edge A -> B means A names an item of B: a `use`
or an inline path (`crate::store::sqlite_url`, `super::html::escape`, `store::Store` after
`use crate::store`). A path is attributed to the deepest module file it names, so a
re-export in `mod.rs` makes users depend on `mod.rs`, which depends on the child it
re-exports. Declaring a child (`mod x;`) is not an edge: a parent owning a child is not
the parent using it; and a module naming an item of its own parent (`super::Store`) is not
an edge either: a child is part of its parent, as `impl super::Store` in a child is part of
the store. Test code is left out (`#[cfg(test)]` modules, `tests.rs`,
`*_tests.rs`): tests use what they test.

A circle is a strongly connected component of more than one file. With `--depth N`,
modules are merged into their ancestor N levels below the crate (`--depth 1`: `http` holds
`http::portal::pages`), and a circle is one between those.
"""

import argparse
import os
import re
import sys

TEST_FILE = re.compile(r"(^|_)tests\.rs$")


def strip_comments_and_strings(text):
    """Removes comments and the contents of string and char literals."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (
            i and (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or (
            c == "'" and re.match(r"'\\(x..|u\{[0-9a-fA-F]+\})'", text[i:i + 12])
        ):
            end = text.find("'", i + 2)
            out.append("' '")
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_modules(text):
    """Removes `#[cfg(test)]` items (inline test modules and test-only functions)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*", text)
        if not m:
            return text
        j = m.end()
        # The item ends at its first `;` (a `mod x;`) or its matching `}`.
        depth = 0
        k = j
        while k < len(text):
            if text[k] == ";" and depth == 0:
                break
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        text = text[: m.start()] + text[k + 1:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}}` -> [(['a','b'], 'b'), (['a','c','d'], 'd'), (['a','c','e'], 'f')]."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        # Splits s at top-level commas.
        parts, depth, start = [], 0, 0
        for idx, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:idx])
                start = idx + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                head = [seg for seg in part[:brace].split("::") if seg]
                walk(prefix + head, part[brace + 1: part.rfind("}")])
                continue
            alias = None
            if "as" in part and re.search(r"[A-Za-z0-9_]as[A-Za-z_]", part):
                # `x as y` lost its spaces: split on the last `as` between identifiers.
                m = re.match(r"(.*[A-Za-z0-9_*])as([A-Za-z_][A-Za-z0-9_]*)$", part)
                if m:
                    part, alias = m.group(1), m.group(2)
            segs = [seg for seg in part.split("::") if seg]
            if segs and segs[-1] == "self":
                segs = segs[:-1]
            if not segs:
                segs = list(prefix)
                full = segs
            else:
                full = prefix + segs
            name = alias or (full[-1] if full else None)
            results.append((full, name))

    walk([], tree)
    return results


class Crate:
    def __init__(self, root):
        self.root = root
        src = os.path.join(root, "src")
        self.files = {}  # module path tuple -> file path
        for base, _, names in os.walk(src):
            for name in names:
                if not name.endswith(".rs") or TEST_FILE.search(name):
                    continue
                path = os.path.join(base, name)
                rel = os.path.relpath(path, src)[:-3].split(os.sep)
                if rel in (["lib"], ["main"]):
                    module = ()
                elif rel[-1] == "mod":
                    module = tuple(rel[:-1])
                else:
                    module = tuple(rel)
                if module == () and rel == ["main"] and os.path.exists(os.path.join(src, "lib.rs")):
                    continue  # a binary beside a library: the library is the crate
                self.files[module] = path
        self.edges = {module: set() for module in self.files}
        texts = {}
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                texts[module] = strip_test_modules(strip_comments_and_strings(f.read()))
        # Re-exports (`pub use child::Item`): a path through them leads to where the item is.
        self.reexports = {module: {} for module in self.files}
        for module, text in texts.items():
            for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
                for segs, name in expand_use_tree(m.group(1)):
                    target = self.resolve(module, segs, {})
                    if target is not None and name and name != "*":
                        self.reexports[module][name] = target
        for module, text in texts.items():
            self._scan(module, text)

    def deepest(self, segs):
        for k in range(len(segs), -1, -1):
            if tuple(segs[:k]) in self.files:
                return tuple(segs[:k])
        return None

    def resolve(self, module, segs, aliases):
        """Absolute module path of `segs` seen from `module`, or None (another crate)."""
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("self", "super"):
            base = list(module)
            while segs and segs[0] in ("self", "super"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
            return base + segs
        if tuple(module) + (segs[0],) in self.files:
            return list(module) + segs
        if segs[0] in aliases:
            return aliases[segs[0]] + segs[1:]
        return None

    def _scan(self, module, text):
        aliases = {}
        body = re.sub(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", "", text)
        for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            reexport = m.group(1) is not None
            for segs, name in expand_use_tree(m.group(2)):
                target = self.resolve(module, segs, aliases)
                if target is None:
                    continue
                # A re-export alone is a door, not a use; the module uses it if it names it.
                if not reexport or (name and re.search(rf"\b{re.escape(name)}\b", body)):
                    self._edge(module, target)
                if name and name != "*" and tuple(target) in self.files:
                    aliases[name] = target
        for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:[A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*)", body):
            segs = m.group(1).split("::")
            target = self.resolve(module, segs, aliases)
            if target is not None:
                self._edge(module, target)

    def _edge(self, module, target):
        to = self.deepest(target)
        seen = 0
        while to is not None and len(to) < len(target) and seen < 20:
            item = target[len(to)]
            again = self.reexports[to].get(item)
            if again is None or module == to:
                break
            target = again + target[len(to) + 1:]
            to = self.deepest(target)
            seen += 1
        # A module is part of its ancestors: naming one of their items is not a circle.
        if to is not None and to != module[: len(to)]:
            self.edges[module].add(to)

    def collapse(self, depth):
        """Merges every module into its ancestor `depth` levels below the crate root."""
        merged = {}
        for v, targets in self.edges.items():
            merged.setdefault(v[:depth], set())
            for w in targets:
                if w[:depth] != v[:depth]:
                    merged[v[:depth]].add(w[:depth])
        self.edges = merged
        self.files = {v: None for v in merged}

    def name(self, module):
        return "::".join(module) or "crate"

    def circles(self):
        """Strongly connected components of more than one module (Tarjan)."""
        index, low, stack, on, out = {}, {}, [], set(), []
        counter = [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(self.edges[v]):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

        sys.setrecursionlimit(10000)
        for v in sorted(self.files):
            if v not in index:
                strong(v)
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crates", nargs="+", help="crate directories (with src/)")
    parser.add_argument("--dot", action="store_true", help="print Graphviz")
    parser.add_argument("--check", action="store_true", help="only report circles; exit 1 on one")
    parser.add_argument("--depth", type=int, help="merge modules into their ancestors this deep")
    args = parser.parse_args()
    failed = False
    for root in args.crates:
        crate = Crate(root)
        if args.depth is not None:
            crate.collapse(args.depth)
        circles = crate.circles()
        label = os.path.basename(os.path.normpath(root))
        if args.dot:
            print(f'digraph "{label}" {{')
            for v in sorted(crate.edges):
                for w in sorted(crate.edges[v]):
                    print(f'  "{crate.name(v)}" -> "{crate.name(w)}";')
            print("}")
            continue
        if not args.check:
            print(f"# {label}: {len(crate.files)} modules")
            for v in sorted(crate.edges):
                targets = ", ".join(crate.name(w) for w in sorted(crate.edges[v]))
                print(f"{crate.name(v)} -> {targets}")
        for circle in circles:
            failed = True
            print(f"{label}: circle of {len(circle)} modules: " + ", ".join(crate.name(v) for v in circle))
        if args.check and not circles:
            print(f"{label}: {len(crate.files)} modules, no circle")
    sys.exit(1 if failed and args.check else 0)


if __name__ == "__main__":
    main()
