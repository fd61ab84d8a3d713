"""JSON templates with embedded expressions: CloudFlow constructors and legacy FnF mappings.

CloudFlow (``dialect="cloudflow"``) — ``InputConstructor``, ``OutputConstructor``,
``GlobalConstructor``, ``ItemConstructor``, Task ``Parameters``:

* a key ending in ``.$`` holds an expression (it must be a string, else a compile error); its
  result is stored under the key without the suffix: ``{"job_id.$": "$Input.Body.job_id"}``
  renders as ``{"job_id": …}``. Giving both ``x`` and ``x.$`` in one object is an error;
* every other key is a literal, and literals are never interpreted (``"$Input"`` stays that
  string); objects and arrays nest to any depth (up to ``MAX_TEMPLATE_DEPTH``), and objects
  inside arrays may have ``.$`` keys too;
* the key ``$`` alone in an object (Decision 3): its value is an expression whose result *is*
  the whole value (``{"$": "jsonMerge($Input, $Output.Body)"}``). ``$`` beside other keys is
  an error.

Legacy (``dialect="legacy"``), used for ``serviceParams``: a string value that starts with
``$`` is a legacy expression (``MessageBody: $`` is the whole mapped input); everything else is
literal and ``.$`` keys are not special.

Legacy mappings (``inputMappings``, ``outputMappings``, ``errorMappings``): a list of
``{target: <key>, source: <src>}``. ``source`` is a legacy expression when it is a string that
starts with ``$`` (``$.x``, ``$input.x``, ``$local.key``, ``$local[*].result``,
``$context.task.token``, bare ``$`` = the whole input); any other value is a constant
(``source: pass1`` → ``"pass1"``). A constant string cannot start with ``$``.

Compilation collects *every* problem in the value (not just the first) as ``(path, message)``
pairs in :class:`TemplateError`, with paths such as ``States[2].InputConstructor.job_id.$``.
Rendering returns fresh containers that share nothing with the template or the env, and raises
:class:`~executions.engine.expressions.EvaluationError` with ``path`` set to the failing key.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .builtins import BuiltinError, EvalBudget, copy_json, type_name
from .expressions import (
    DIALECTS,
    EvaluationError,
    Expression,
    ExpressionError,
    compile_expression,
    new_budget,
)

__all__ = [
    "MAX_TEMPLATE_DEPTH",
    "Mappings",
    "Template",
    "TemplateError",
    "compile_mappings",
    "compile_template",
    "compile_value_or_expr",
]

MAX_TEMPLATE_DEPTH = 100
_MAPPING_KEYS = ("target", "source")


class TemplateError(Exception):
    """A template or mapping list is invalid; ``errors`` lists every ``(path, message)``."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(list(errors))
        self.errors: list[tuple[str, str]] = list(errors)

    def __str__(self) -> str:
        return "; ".join(f"{path}: {message}" for path, message in self.errors)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------------------------
# Compiled parts
# --------------------------------------------------------------------------------------------


class _Part:
    __slots__ = ()

    def render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> Any:
        raise NotImplementedError  # pragma: no cover


class _Const(_Part):
    __slots__ = ("value", "units")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.units: int | None = None  # what copying the value costs, counted on first use

    def render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> Any:
        if self.units is None:
            counter = EvalBudget(max_steps=0, max_work=1 << 62)
            copy_json(self.value, _Counting(counter))
            self.units = counter.work
        # Copying a large literal is work like any other (and the same amount every time).
        budget.charge(self.units)
        # A copy, so that a caller mutating the result cannot change the compiled template.
        return copy_json(self.value)


class _Counting:
    """The ``charge`` part of an ``EvalContext``, for measuring what a copy costs."""

    __slots__ = ("charge",)

    def __init__(self, budget: EvalBudget) -> None:
        self.charge = budget.charge


class _Expr(_Part):
    __slots__ = ("expression", "path")

    def __init__(self, expression: Expression, path: str) -> None:
        self.expression = expression
        self.path = path

    def render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> Any:
        try:
            return self.expression.evaluate(env, now=now, rng=rng, budget=budget)
        except EvaluationError as exc:
            if exc.path is None:
                exc.path = self.path
            raise


class _Object(_Part):
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[str, _Part]]) -> None:
        self.items = tuple(items)

    def render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> Any:
        budget.charge(len(self.items) + 1)
        return {key: part.render(env, now, rng, budget) for key, part in self.items}


class _Array(_Part):
    __slots__ = ("parts",)

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = tuple(parts)

    def render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> Any:
        budget.charge(len(self.parts) + 1)
        return [part.render(env, now, rng, budget) for part in self.parts]


class _Compiler:
    """Walks a YAML/JSON value, building parts and collecting every error with its path."""

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "cloudflow" | "legacy" | "literal" (nothing is an expression)
        self.errors: list[tuple[str, str]] = []
        self.roots: set[str] = set()

    def error(self, path: str, message: str) -> _Part:
        self.errors.append((path, message))
        return _Const(None)

    def expression(self, value: Any, path: str, what: str) -> _Part:
        if not isinstance(value, str):
            return self.error(path, f"{what} must be an expression string, got {type_name(value)}")
        dialect = "legacy" if self.mode == "legacy" else "cloudflow"
        try:
            expression = compile_expression(value, dialect=dialect)
        except ExpressionError as exc:
            return self.error(path, str(exc))
        self.roots |= expression.roots
        return _Expr(expression, path)

    def value(self, value: Any, path: str, depth: int = 0) -> _Part:
        if depth > MAX_TEMPLATE_DEPTH:
            return self.error(path, f"nested too deeply (more than {MAX_TEMPLATE_DEPTH} levels)")
        if isinstance(value, dict):
            return self.object(value, path, depth)
        if isinstance(value, (list, tuple)):
            parts = [self.value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
            if all(isinstance(p, _Const) for p in parts):
                return _Const([p.value for p in parts])  # type: ignore[attr-defined]
            return _Array(parts)
        if isinstance(value, str):
            if self.mode == "legacy" and value.startswith("$"):
                return self.expression(value, path, "value")
            return _Const(value)
        if value is None or isinstance(value, (bool, int)):
            return _Const(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return self.error(path, "numbers must be finite (not .nan or .inf)")
            return _Const(value)
        # YAML turns unquoted 2024-01-01 into a date, for instance; say how to fix it.
        return self.error(
            path, "unsupported value: only JSON values are allowed (quote dates and timestamps)"
        )

    def object(self, value: dict[Any, Any], path: str, depth: int) -> _Part:
        cloudflow = self.mode == "cloudflow"
        if cloudflow and "$" in value:
            if len(value) == 1:
                return self.expression(value["$"], _join(path, "$"), "the value of '$'")
            self.error(
                _join(path, "$"),
                "'$' must be the only key of its object (its result replaces the whole object)",
            )
        items: list[tuple[str, _Part]] = []
        seen: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                # YAML reads unquoted on/off/yes/no as booleans and 1 as an integer.
                self.error(_join(path, str(key)), f"keys must be strings, got {type_name(key)}")
                continue
            key_path = _join(path, key)
            if cloudflow and key == "$":
                continue  # already reported above
            if cloudflow and key.endswith(".$"):
                name = key[:-2]
                part = self.expression(item, key_path, f"the value of {key!r}")
                if not name:
                    self.error(key_path, "the key name before '.$' is empty")
                    continue
            else:
                name = key
                part = self.value(item, key_path, depth + 1)
            if name in seen:
                self.error(key_path, f"key {name!r} is given twice (as {seen[name]!r} and {key!r})")
                continue
            seen[name] = key
            items.append((name, part))
        if all(isinstance(p, _Const) for _, p in items):
            return _Const({k: p.value for k, p in items})  # type: ignore[attr-defined]
        return _Object(items)

    def raise_errors(self) -> None:
        if self.errors:
            raise TemplateError(self.errors)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


class Template:
    """A compiled template. ``render`` may be called any number of times, concurrently."""

    __slots__ = ("_part", "path", "roots")

    def __init__(self, part: _Part, path: str, roots: frozenset[str]) -> None:
        self._part = part
        self.path = path
        self.roots = roots  # env keys any embedded expression reads

    @property
    def is_constant(self) -> bool:
        """True when the template holds no expression (rendering just copies a value)."""
        return isinstance(self._part, _Const)

    def render(
        self,
        env: Mapping[str, Any],
        *,
        now: datetime,
        rng: random.Random,
        budget: EvalBudget | None = None,
    ) -> Any:
        """The value with every expression evaluated; raises ``EvaluationError``.

        Every expression of the template charges ``budget`` (a fresh ``new_budget()`` when
        not given), so a template of many expressions is bounded as a whole."""
        return _run(self._part.render, env, now, rng, budget)

    def __repr__(self) -> str:
        return f"Template(path={self.path!r}, roots={sorted(self.roots)!r})"


def _run(
    render: Any, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: Any
) -> Any:
    """``render(env, now, rng, budget)``, with the budget's own refusals (charged between
    expressions, by literals and containers) reported as ``EvaluationError`` too."""
    try:
        return render(env, now, rng, budget if budget is not None else new_budget())
    except BuiltinError as exc:
        raise EvaluationError(exc.message) from None


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (expected one of {DIALECTS})")


def compile_template(value: Any, *, path: str, dialect: str = "cloudflow") -> Template:
    """Compile a constructor / Parameters value; raise :class:`TemplateError` listing all errors."""
    _check_dialect(dialect)
    compiler = _Compiler(dialect)
    part = compiler.value(value, path)
    compiler.raise_errors()
    return Template(part, path, frozenset(compiler.roots))


def compile_value_or_expr(
    obj: Mapping[str, Any], key: str, *, path: str, dialect: str = "cloudflow"
) -> Template | None:
    """Compile the field ``key`` of ``obj`` given either literally or as ``key.$``.

    For fields such as Wait ``Seconds`` / ``Seconds.$`` or ``Timestamp`` / ``Timestamp.$``:
    returns a :class:`Template` rendering to the value, or ``None`` when neither is present.
    Giving both is an error. ``path`` is the path of ``obj`` itself.
    """
    _check_dialect(dialect)
    compiler = _Compiler(dialect)
    expr_key = f"{key}.$"
    if key in obj and expr_key in obj:
        raise TemplateError(
            [(_join(path, expr_key), f"give either {key!r} or {expr_key!r}, not both")]
        )
    if expr_key in obj:
        field_path = _join(path, expr_key)
        part = compiler.expression(obj[expr_key], field_path, f"the value of {expr_key!r}")
    elif key in obj:
        field_path = _join(path, key)
        part = compiler.value(obj[key], field_path)
    else:
        return None
    compiler.raise_errors()
    return Template(part, field_path, frozenset(compiler.roots))


class Mappings:
    """Compiled legacy ``inputMappings`` / ``outputMappings`` / ``errorMappings``."""

    __slots__ = ("_items", "path", "roots")

    def __init__(self, items: list[tuple[str, _Part]], path: str, roots: frozenset[str]) -> None:
        self._items = tuple(items)
        self.path = path
        self.roots = roots  # of "input", "local", "context"

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(target for target, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def apply(
        self,
        env: Mapping[str, Any],
        *,
        now: datetime,
        rng: random.Random,
        budget: EvalBudget | None = None,
    ) -> dict[str, Any]:
        """A new ``{target: value}`` dict; raises ``EvaluationError`` (with ``path``).
        ``budget`` as for :meth:`Template.render`."""
        return _run(self._render, env, now, rng, budget)

    def _render(
        self, env: Mapping[str, Any], now: datetime, rng: random.Random, budget: EvalBudget
    ) -> dict[str, Any]:
        budget.charge(len(self._items) + 1)
        return {target: part.render(env, now, rng, budget) for target, part in self._items}

    def __repr__(self) -> str:
        return f"Mappings(path={self.path!r}, targets={list(self.targets)!r})"


def compile_mappings(items: list[Any] | None, *, path: str) -> Mappings:
    """Compile a legacy mapping list; ``None`` gives an empty :class:`Mappings`.

    Whether an *absent* mapping list means "use the default data flow" is the caller's
    business: check the raw field before compiling.
    """
    if items is None:
        return Mappings([], path, frozenset())
    if not isinstance(items, list):
        raise TemplateError(
            [(path, f"must be a list of {{target, source}} items, got {type_name(items)}")]
        )
    expressions = _Compiler("legacy")
    literals = _Compiler("literal")
    errors = expressions.errors = literals.errors  # one list, in document order
    compiled: list[tuple[str, _Part]] = []
    targets: dict[str, int] = {}
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.append(
                (item_path, f"must be an object with target and source, got {type_name(item)}")
            )
            continue
        for key in item:
            if key not in _MAPPING_KEYS:
                errors.append((_join(item_path, str(key)), "unknown key (expected target, source)"))
        target = item.get("target")
        target_ok = False
        if "target" not in item:
            errors.append((_join(item_path, "target"), "is required"))
        elif not isinstance(target, str) or not target:
            errors.append((_join(item_path, "target"), "must be a non-empty string"))
        elif target in targets:
            errors.append(
                (
                    _join(item_path, "target"),
                    f"duplicate target {target!r} (also in item {targets[target]})",
                )
            )
        else:
            targets[target] = i
            target_ok = True
        if "source" not in item:
            errors.append((_join(item_path, "source"), "is required"))
            continue
        source = item["source"]
        source_path = _join(item_path, "source")
        if isinstance(source, str) and source.startswith("$"):
            part = expressions.expression(source, source_path, "source")
        else:
            part = literals.value(source, source_path)
        if target_ok:
            compiled.append((target, part))
    if errors:
        raise TemplateError(errors)
    return Mappings(compiled, path, frozenset(expressions.roots))
