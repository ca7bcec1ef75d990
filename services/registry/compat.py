"""Avro schema resolution rules: can a reader schema read data written with a writer schema?"""

from __future__ import annotations

from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
# Writer type -> reader types it may be promoted to (Avro specification, "Schema Resolution").
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
LEVELS = frozenset(
    {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}
)


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


class _Schema:
    """A parsed schema with its named types indexed, so references can be followed."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.names: dict[str, tuple[dict[str, Any], str | None]] = {}
        self._index(root, None)

    def _index(self, node: Any, namespace: str | None) -> None:
        if isinstance(node, list):
            for branch in node:
                self._index(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in NAMED:
                ns = node.get("namespace", namespace)
                full = _fullname(node["name"], ns)
                ns = full.rsplit(".", 1)[0] if "." in full else None
                self.names[full] = (node, ns)
                for field in node.get("fields", []):
                    self._index(field["type"], ns)
            elif kind == "array":
                self._index(node["items"], namespace)
            elif kind == "map":
                self._index(node["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._index(kind, namespace)

    def resolve(self, node: Any, namespace: str | None) -> tuple[Any, str | None]:
        """Follow references and wrappers to a concrete node: a union list or a dict with a type."""
        if isinstance(node, list):
            return node, namespace
        if isinstance(node, str):
            if node in PRIMITIVES:
                return {"type": node}, namespace
            key = _fullname(node, namespace)
            found = self.names.get(key) or self.names.get(node)
            if found is None:
                raise ValueError(f"unknown type reference {node!r}")
            return found
        kind = node.get("type")
        if isinstance(kind, (dict, list)):
            return self.resolve(kind, namespace)
        if isinstance(kind, str) and kind not in PRIMITIVES and kind not in NAMED | {"array", "map"}:
            return self.resolve(kind, namespace)
        if kind in NAMED:
            full = _fullname(node["name"], node.get("namespace", namespace))
            return node, (full.rsplit(".", 1)[0] if "." in full else None)
        return node, namespace


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = _Schema(reader)
        self.writer = _Schema(writer)
        self.in_progress: set[tuple[int, int]] = set()

    def check(self, r: Any, rns: str | None, w: Any, wns: str | None, path: str) -> list[str]:
        r, rns = self.reader.resolve(r, rns)
        w, wns = self.writer.resolve(w, wns)
        if isinstance(w, list):
            problems: list[str] = []
            for i, branch in enumerate(w):
                problems += self.check(r, rns, branch, wns, f"{path}[writer union {i}]")
            return problems
        if isinstance(r, list):
            for branch in r:
                if not self.check(branch, rns, w, wns, path):
                    return []
            return [f"{path or '/'}: reader union has no branch for writer type {self._describe(w)}"]
        rt, wt = r["type"], w["type"]
        if rt != wt and not (rt in ("record", "error") and wt in ("record", "error")):
            if wt in PROMOTIONS and rt in PROMOTIONS[wt]:
                return []
            return [f"{path or '/'}: reader type {rt} cannot read writer type {wt}"]
        if rt in PRIMITIVES:
            return []
        if rt == "array":
            return self.check(r["items"], rns, w["items"], wns, f"{path}/items")
        if rt == "map":
            return self.check(r["values"], rns, w["values"], wns, f"{path}/values")
        if _short(r["name"]) != _short(w["name"]) and _short(w["name"]) not in r.get("aliases", []):
            return [f"{path or '/'}: reader {rt} {r['name']} does not match writer {rt} {w['name']}"]
        if rt == "fixed":
            if r["size"] != w["size"]:
                return [f"{path or '/'}: fixed {r['name']} size {r['size']} != writer size {w['size']}"]
            return []
        if rt == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                return [f"{path or '/'}: enum {r['name']} lacks writer symbols {missing} and has no default"]
            return []
        pair = (id(r), id(w))
        if pair in self.in_progress:
            return []
        self.in_progress.add(pair)
        problems = []
        writer_fields = {f["name"]: f for f in w["fields"]}
        for field in r["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            field_path = f"{path}/{field['name']}"
            if match is None:
                if "default" not in field:
                    problems.append(f"{field_path}: reader field has no default and the writer lacks it")
                continue
            problems += self.check(field["type"], rns, match["type"], wns, field_path)
        self.in_progress.discard(pair)
        return problems

    @staticmethod
    def _describe(node: Any) -> str:
        kind = node.get("type")
        return f"{kind} {node['name']}" if kind in NAMED else str(kind)


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Return why ``reader`` cannot read data written with ``writer``; empty when it can."""
    return _Checker(reader, writer).check(reader, None, writer, None, "")


def compatibility_problems(level: str, new: Any, existing: list[Any]) -> list[str]:
    """Check ``new`` against registered versions (oldest first) under a Confluent compatibility level."""
    if level == "NONE" or not existing:
        return []
    targets = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for old in targets:
        if base in ("BACKWARD", "FULL"):
            problems += [f"BACKWARD: {p}" for p in read_problems(new, old)]
        if base in ("FORWARD", "FULL"):
            problems += [f"FORWARD: {p}" for p in read_problems(old, new)]
    return problems
