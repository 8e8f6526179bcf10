"""The kernel language front end: lark parse tree -> dataflow IR (pimc.ir).

The grammar is grammar/kernel.lark. Every node keeps its source location; syntax errors
read `file:line:col: what was expected`, then the line and a caret.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import lark
from lark import v_args
from lark.visitors import Transformer_NonRecursive

from pimc.grammar import KERNEL_GRAMMAR
from pimc.ir import Kernel, Loc, Node, Param, add_node
from pimc.isa.errors import PimError

_PARSER: lark.Lark | None = None
COMPARE_OPS = {"<": "lt", "<=": "le", "==": "eq", ">": "gt", ">=": "ge", "!=": "ne"}

TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "NUMBER": "a number", "DTYPE": "a type",
    "SEMICOLON": "';'", "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "__ANON_0": "'->'", "ADDOP": "'+' or '-'", "STAR": "'*'", "COMPARE": "a comparison",
    "MINUS": "'-'", "KERNEL": "'kernel'", "LET": "'let'", "$END": "the end of the file",
}


def _parser() -> lark.Lark:
    global _PARSER
    if _PARSER is None:
        _PARSER = lark.Lark(KERNEL_GRAMMAR.read_text(), parser="lalr",
                            propagate_positions=True, maybe_placeholders=False)
    return _PARSER


def _describe(expected: set[str]) -> str:
    words = sorted({TOKEN_WORDS.get(t, f"'{t.lower()}'") for t in expected})
    if len(words) > 6:
        words = [*words[:6], "..."]
    return ", ".join(words)


def syntax_error(text: str, name: str, exc: lark.UnexpectedInput) -> PimError:
    line, column = exc.line, exc.column
    if isinstance(exc, lark.UnexpectedToken):
        found = "the end of the file" if exc.token.type == "$END" else f"'{exc.token}'"
        what = f"expected {_describe(exc.expected)}, found {found}"
    elif isinstance(exc, lark.UnexpectedCharacters):
        what = f"unexpected character {text[exc.pos_in_stream]!r}"
    else:
        what = "unexpected end of the file"
    source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    return PimError(f"{name}:{line}:{column}: {what}\n{source}\n{' ' * (column - 1)}^")


def located_error(text: str, loc: Loc, what: str) -> PimError:
    """A semantic error pointing at a node: file:line:col, the line, a caret."""
    lines = text.splitlines()
    source = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
    return PimError(f"{loc}: {what}\n{source}\n{' ' * (loc.column - 1)}^")


@v_args(inline=True)
class _ToKernels(Transformer_NonRecursive):
    """One method per grammar rule. Expressions become IR nodes of the kernel being built."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__()
        self.name, self.text = name, text

    def _loc(self, meta_or_token) -> Loc:
        return Loc(self.name, meta_or_token.line, meta_or_token.column)

    # Types and parameters: plain values.
    def shape(self, *dims):
        return tuple(int(d) for d in dims)

    def type(self, dtype, shape=()):
        return str(dtype), shape

    def param(self, name, typ):
        loc = self._loc(name)
        if 0 in typ[1]:
            raise located_error(self.text, loc, f"'{name}' has a zero-size dimension "
                                f"{list(typ[1])}: every dimension must be at least 1")
        if len(typ[1]) > MAX_RANK:
            raise located_error(self.text, loc, f"'{name}' has {len(typ[1])} dimensions; "
                                f"at most {MAX_RANK} are supported")
        return Param(str(name), typ[0], typ[1], loc)

    def inputs(self, *ps):
        return tuple(ps)

    outputs = inputs

    # Expressions: closures that add nodes to a kernel (built once the kernel exists).
    @v_args(meta=True, inline=True)
    def number(self, meta, tok):
        if len(tok) > 400:  # past any type's range; Python refuses > 4300-digit integers
            raise located_error(self.text, self._loc(meta),
                                f"a literal of {len(tok)} characters is too long")
        value = float(tok) if any(c in tok for c in ".eE") else int(tok)
        return lambda k, env: add_node(k, Node("const", self._loc(meta),
                                               attrs=(("value", value),)))

    @v_args(meta=True, inline=True)
    def ref(self, meta, tok):
        loc = self._loc(meta)

        def build(k: Kernel, env: dict[str, int]) -> int:
            if str(tok) not in env:
                raise located_error(self.text, loc, f"'{tok}' is not defined here")
            return env[str(tok)]
        return build

    def _op(self, meta, op: str, *subs, attrs=()):
        loc = self._loc(meta)
        return lambda k, env: add_node(k, Node(op, loc, attrs=attrs),
                                       tuple(s(k, env) for s in subs))

    @v_args(meta=True, inline=True)
    def binary(self, meta, a, op, b):
        return self._op(meta, "add" if op == "+" else "sub", a, b)

    @v_args(meta=True, inline=True)
    def mul(self, meta, a, b):
        return self._op(meta, "mul", a, b)

    @v_args(meta=True, inline=True)
    def neg(self, meta, a):
        return self._op(meta, "neg", a)

    @v_args(meta=True, inline=True)
    def compare(self, meta, a, op, b):
        return self._op(meta, COMPARE_OPS[str(op)], a, b)

    @v_args(meta=True, inline=True)
    def cast(self, meta, dtype, a):
        return self._op(meta, "cast", a, attrs=(("to", str(dtype)),))

    def keyword(self, name, value):
        return ("keyword", str(name), int(value))

    def args(self, *items):
        return list(items)

    @v_args(meta=True, inline=True)
    def call(self, meta, name, args=None):
        args = args or []
        positional = [a for a in args if not isinstance(a, tuple)]
        keywords = tuple((a[1], a[2]) for a in args if isinstance(a, tuple))
        return self._op(meta, f"call:{name}", *positional, attrs=keywords)

    # Statements and kernels.
    @v_args(meta=True, inline=True)
    def let(self, meta, name, expr):
        return ("let", str(name), expr, self._loc(meta))

    @v_args(meta=True, inline=True)
    def assign(self, meta, name, expr):
        return ("assign", str(name), expr, self._loc(meta))

    @v_args(meta=True, inline=True)
    def kernel(self, meta, name, *parts):
        parts = list(parts)
        params, results = parts.pop(0), parts.pop(0)
        k = Kernel(str(name), params, results, source=self.name)
        env: dict[str, int] = {}
        seen: set[str] = set()
        for p in (*params, *results):
            if p.name in seen:
                raise located_error(self.text, p.loc, f"'{p.name}' is declared twice in "
                                    f"kernel '{name}'")
            seen.add(p.name)
        for p in params:
            env[p.name] = add_node(k, Node("input", p.loc, p.dtype, p.shape,
                                           (("name", p.name),)))
        result_names = {r.name for r in results}
        for kind, target, expr, loc in parts:
            if target in env and kind == "let":
                raise located_error(self.text, loc, f"'{target}' is already defined")
            if kind == "assign":
                if target not in result_names:
                    raise located_error(self.text, loc,
                                        f"'{target}' is not a result of kernel '{name}' "
                                        f"(results: {', '.join(sorted(result_names))})")
                if target in k.outputs:
                    raise located_error(self.text, loc, f"result '{target}' is assigned twice")
                k.outputs[target] = env[target] = expr(k, env)  # readable from here on
                k.result_locs[target] = loc
            else:
                env[target] = expr(k, env)
        missing = [r.name for r in results if r.name not in k.outputs]
        if missing:
            raise located_error(self.text, self._loc(meta),
                                f"kernel '{name}' never assigns result '{missing[0]}'")
        return k

    def start(self, *kernels):
        return list(kernels)


MAX_RANK = 32  # numpy's limit on dimensions
DEPTH = 12_000  # Python frames allowed while building: expressions ~3,000 operators deep


def _too_deep(name: str) -> PimError:
    return PimError(f"{name}: an expression is nested too deeply (over about "
                    f"{DEPTH // 4} operators in a chain): split it with intermediate variables")


@contextlib.contextmanager
def deep_recursion(name: str = "<kernel>") -> Iterator[None]:
    """Room for walks that recurse once per level of an expression (building it, lowering
    it); past ~3,000 levels a clean "nested too deeply" error instead of a RecursionError."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, DEPTH))
    try:
        yield
    except RecursionError:
        raise _too_deep(name) from None
    finally:
        sys.setrecursionlimit(limit)


def parse_kernels(text: str, name: str = "<kernel>") -> list[Kernel]:
    """Parse a file of kernels into IR (types not yet checked)."""
    try:
        tree = _parser().parse(text)
    except lark.UnexpectedInput as exc:
        raise syntax_error(text, name, exc) from None
    with deep_recursion(name):
        try:
            kernels = _ToKernels(name, text).transform(tree)
        except lark.exceptions.VisitError as exc:
            if isinstance(exc.orig_exc, PimError):
                raise exc.orig_exc from None
            if isinstance(exc.orig_exc, RecursionError):
                raise _too_deep(name) from None
            raise
    seen: set[str] = set()
    for k in kernels:
        if k.name in seen:
            raise PimError(f"{name}: kernel '{k.name}' is defined twice")
        seen.add(k.name)
    return kernels


def load_kernels(path: str | Path) -> tuple[list[Kernel], str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{path}: cannot read: {exc}") from None
    return parse_kernels(text, str(path)), text
