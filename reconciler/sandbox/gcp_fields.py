"""Partial responses: the ``fields`` system parameter every Google REST API takes.

``fields=entries(timestamp,protoPayload(methodName,status/code)),nextPageToken`` keeps only
those fields of the answer: ``a/b`` selects ``b`` inside ``a``, ``a(b,c)`` several fields
inside ``a``, a list applies the selection to each element, and a field absent from the
answer stays absent. An ill-formed selector is a 400, as Google answers it.
"""

from __future__ import annotations

from typing import Any

Tree = dict[str, "Tree | None"]  # None: the whole value


class FieldsError(ValueError):
    """An ill-formed ``fields`` selector."""


def parse(text: str) -> Tree:
    tree, rest = _selection(text.replace(" ", ""), 0)
    if rest != len(text.replace(" ", "")):
        raise FieldsError(f"Invalid field selection {text!r}")
    return tree


def _selection(text: str, at: int) -> tuple[Tree, int]:
    tree: Tree = {}
    while True:
        path: list[str] = []
        start = at
        while at < len(text) and text[at] not in ",()/":
            at += 1
        if at == start:
            raise FieldsError(f"Invalid field selection {text!r}")
        path.append(text[start:at])
        while at < len(text) and text[at] == "/":
            start = at = at + 1
            while at < len(text) and text[at] not in ",()/":
                at += 1
            if at == start:
                raise FieldsError(f"Invalid field selection {text!r}")
            path.append(text[start:at])
        sub: Tree | None = None
        if at < len(text) and text[at] == "(":
            sub, at = _selection(text, at + 1)
            if at >= len(text) or text[at] != ")":
                raise FieldsError(f"Invalid field selection {text!r}")
            at += 1
        _merge(tree, path, sub)
        if at < len(text) and text[at] == ",":
            at += 1
            continue
        return tree, at


def _merge(tree: Tree, path: list[str], sub: Tree | None) -> None:
    node = tree
    for name in path[:-1]:
        child = node.get(name, {})
        if child is None:
            return  # the whole of it is selected already
        node[name] = child
        node = child
    last = path[-1]
    if sub is None or node.get(last, {}) is None:
        node[last] = None
    else:
        existing = node.get(last) or {}
        for key, value in sub.items():
            existing[key] = value
        node[last] = existing


def select(value: Any, tree: Tree | None) -> Any:
    """``value`` with only the fields of ``tree``."""
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [select(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    return {key: select(value[key], sub) for key, sub in tree.items() if key in value}
