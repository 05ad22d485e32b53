"""The part of cel-go's type check that CRD authors meet most: a rule naming an undefined field.

kube-apiserver compiles each ``x-kubernetes-validations`` rule against a type built from the
schema, so ``self.replicass > 0`` is refused when the CRD is written (``undefined field
'replicass'``). The ``cel`` interpreter is dynamically typed and would only fail at run time,
so field selections ``self.a.b`` / ``oldSelf.a.b`` are checked here against the schema. The walk
stops where the type is dynamic or open: maps (``additionalProperties``), preserved unknown
fields, int-or-string, and ``metadata`` of a resource.
"""

from __future__ import annotations

import re

from pilothouse.machinery.apiextensions.nodes import Schema, node, properties

__all__ = ["blank_strings", "undefined_field"]

_STRING = re.compile(r"""(?:[rR]?[bB]?)("""
                     r"""'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_CHAIN = re.compile(r"(?<![\w.])(self|oldSelf)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+)")
_STEP = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_UNESCAPES = (("__underscores__", "__"), ("__dot__", "."), ("__dash__", "-"), ("__slash__", "/"))
_RESERVED = re.compile(r"^__(true|false|null|in|as|break|const|continue|else|for|function|if|import|let|loop|"
                       r"package|namespace|return|var|void|while)__$")


def _unescape(name: str) -> str:
    match = _RESERVED.match(name)
    if match:
        return match.group(1)
    for escaped, plain in _UNESCAPES:
        name = name.replace(escaped, plain)
    return name


def blank_strings(text: str) -> str:
    """The expression with string literals blanked out, offsets unchanged."""
    return _STRING.sub(lambda m: " " * len(m.group(0)), text)


def undefined_field(s: Schema, text: str, is_resource: bool = False) -> str | None:
    """cel-go's error for the first selection of a field ``s`` does not declare, or None.

    ``is_resource``: ``s`` is a resource root or embedded resource (``apiVersion``, ``kind`` and
    ``metadata`` exist without being declared).
    """
    code = blank_strings(text)
    for chain in _CHAIN.finditer(code):
        current: Schema | None = s
        resource = is_resource
        position = chain.start(2)
        for step in _STEP.finditer(chain.group(2)):
            dot = position + step.start() + step.group(0).index(".")
            after = code[position + step.end():].lstrip()
            if after.startswith("("):
                break  # a method call (self.name.startsWith(...)), not a field
            if current is None or _dynamic(current):
                break
            name = _unescape(step.group(1))
            declared = properties(current)
            if name in declared:
                current = declared[name]
            elif resource and name in ("apiVersion", "kind"):
                current = {"type": "string"}
            elif resource and name == "metadata":
                break
            else:
                return _error(text, dot, step.group(1))
            resource = bool(current.get("x-kubernetes-embedded-resource"))
    return None


def _dynamic(s: Schema) -> bool:
    return bool(s.get("x-kubernetes-preserve-unknown-fields") or s.get("x-kubernetes-int-or-string")
                or node(s.get("additionalProperties")) is not None or s.get("additionalProperties") is True
                or s.get("type") not in ("object", None) or (not s.get("type") and not properties(s)))


def _error(text: str, offset: int, name: str) -> str:
    line_number = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    column = offset - line_start
    return (f"ERROR: <input>:{line_number}:{column + 1}: undefined field '{name}'\n"
            f" | {line}\n | {'.' * column}^")
