"""CEL syntax newer than the interpreter's parser, rewritten into what it runs (``desugar``).

Kubernetes 1.32's CEL has optional field selection (``x.?f``, ``x[?k]``) and two-variable
comprehensions (``m.all(k, v, ...)``, ``exists``, ``existsOne``, ``transformList``,
``transformMap``, ``transformMapEntry``); the ``cel`` interpreter parses neither. Both are
rewritten into calls of small functions of ``cellib`` before compiling: ``x.?f`` is
``x.optSelect('f')``, and ``m.all(k, v, P)`` is ``m.kubeTwoVarEntries().all(__e0, P')`` where
``P'`` reads ``k`` as ``__e0[0]`` and ``v`` as ``__e0[1]``. Only real operators are touched:
string literals are blanked out before looking (``celcheck.blank_strings``).
"""

from __future__ import annotations

import re

from pilothouse.machinery.apiextensions.celcheck import blank_strings

__all__ = ["desugar"]

_IDENTIFIER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
_TWO_VAR_CALL = re.compile(r"\.\s*(all|exists|existsOne|exists_one|transformList|transformMap|transformMapEntry)\s*\(")
_QUANTIFIERS = {"all": "all", "exists": "exists", "existsOne": "exists_one", "exists_one": "exists_one"}


def desugar(expression: str) -> str:
    """``expression`` with optional selection and two-variable comprehensions rewritten."""
    code = blank_strings(expression)
    if ".?" in code or "[?" in code:
        expression = _optionals(expression, code)
    if _TWO_VAR_CALL.search(blank_strings(expression)):
        expression = _two_variable(expression, 0)
    return expression


_OPTIONAL_SELECT = re.compile(r"\.\?\s*([A-Za-z_][A-Za-z0-9_]*)")


def _optionals(expression: str, code: str) -> str:
    """``x.?f`` as ``x.optSelect('f')`` and ``x[?k]`` as ``x.optIndex(k)``: the interpreter has
    optional values but not this syntax. ``code`` is ``expression`` with string literals blanked
    (same offsets), so that only real operators are rewritten."""
    out: list[str] = []
    position = 0
    closers: list[int] = []  # offsets of the "]" that close rewritten "[?"
    index = 0
    while index < len(code):
        if code.startswith(".?", index):
            match = _OPTIONAL_SELECT.match(code, index)
            if match:
                out.append(expression[position:index] + f".optSelect('{match.group(1)}')")
                position = index = match.end()
                continue
        if code.startswith("[?", index):
            depth, end = 0, index
            for end in range(index, len(code)):
                depth += {"[": 1, "]": -1}.get(code[end], 0)
                if depth == 0:
                    break
            out.append(expression[position:index] + ".optIndex(")
            closers.append(end)
            position = index = index + 2
            continue
        if closers and index == closers[-1]:
            out.append(expression[position:index] + ")")
            closers.pop()
            position = index = index + 1
            continue
        index += 1
    return "".join(out) + expression[position:]



def _closing(code: str, open_index: int) -> int:
    depth = 0
    for position in range(open_index, len(code)):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(code[position], 0)
        if depth == 0:
            return position
    return -1


def _split_arguments(expression: str, code: str, start: int, end: int) -> list[str]:
    """The top-level comma-separated arguments between ``start`` and ``end`` (exclusive)."""
    arguments: list[str] = []
    depth, begin = 0, start
    for position in range(start, end):
        char = code[position]
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            arguments.append(expression[begin:position])
            begin = position + 1
    arguments.append(expression[begin:end])
    return arguments


def _substitute(expression: str, name: str, replacement: str) -> str:
    code = blank_strings(expression)
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")
    pieces, position = [], 0
    for match in pattern.finditer(code):
        pieces.append(expression[position:match.start()] + replacement)
        position = match.end()
    return "".join(pieces) + expression[position:]


def _two_variable(expression: str, depth: int) -> str:
    code = blank_strings(expression)
    out: list[str] = []
    position = 0
    for match in _TWO_VAR_CALL.finditer(code):
        if match.start() < position:
            continue  # inside a call already rewritten
        open_index = match.end() - 1
        close_index = _closing(code, open_index)
        if close_index < 0:
            break
        arguments = _split_arguments(expression, code, open_index + 1, close_index)
        macro = match.group(1)
        wanted = (3,) if macro in _QUANTIFIERS else (3, 4)
        first, second = (_IDENTIFIER.match(a) for a in arguments[:2]) if len(arguments) > 1 else (None, None)
        if len(arguments) not in wanted or not first or not second:
            continue  # the one-variable macro, left to the interpreter
        variable = f"__e{depth}"
        bodies = [_two_variable(body, depth + 1) for body in arguments[2:]]
        bodies = [_substitute(_substitute(body, first.group(1), f"{variable}[0]"), second.group(1), f"{variable}[1]")
                  for body in bodies]
        out.append(expression[position:match.start()] + _rewrite(macro, variable, bodies))
        position = close_index + 1
    return "".join(out) + expression[position:]


def _rewrite(macro: str, variable: str, bodies: list[str]) -> str:
    entries = ".kubeTwoVarEntries()"
    if macro in _QUANTIFIERS:
        return f"{entries}.{_QUANTIFIERS[macro]}({variable}, {bodies[0]})"
    if len(bodies) == 2:
        entries += f".filter({variable}, {bodies[0]})"
    body = bodies[-1]
    if macro == "transformList":
        return f"{entries}.map({variable}, {body})"
    if macro == "transformMap":
        return f"{entries}.map({variable}, [{variable}[0], {body}]).kubePairsToMap()"
    return f"{entries}.map({variable}, {body}).kubeMergeMaps()"
