"""Compiling a flow definition (CloudFlow FDL or legacy FnF FDL) into a validated ``FlowGraph``.

Contract::

    compile_definition(text, *, max_bytes=1_048_576, known_functions=None, max_states=1000)
        -> graph.FlowGraph
    compile_data(data, lines=None, *, known_functions=None, max_states=1000) -> graph.FlowGraph

``compile_definition`` loads ``text`` (YAML or JSON) with ``yamlsafe.load_document`` and hands
the result to ``compile_data``. Both raise ``graph.DefinitionError`` whose ``errors`` list *every*
problem found, each a ``graph.Diagnostic`` with a path such as
``States[3].Branches[1].States[0].Next`` (legacy: ``steps[0].branches[1].steps[2].goto``) and,
when the text gives it, a 1-based line. A YAML problem is a single diagnostic with path ``""``.

The dialect is chosen by the top-level keys (``Type: StateMachine`` → CloudFlow;
``version: v1`` + ``type: flow`` → legacy). Every field of every state type is checked for
presence and JSON type; unknown fields get a "did you mean" hint; expressions, constructors and
mappings are compiled (``expressions.py`` / ``templates.py``); and each scope is checked as a
graph: ``StartAt`` names a state, names are unique, every ``Next``/``Default``/``goto`` names a
state of the *same* scope, every state is reachable from ``StartAt``, and the scope can end.

Things that are fine but suspicious become ``FlowGraph.warnings`` (severity ``"warning"``): a
function missing from ``known_functions`` (when given), a Fail without ``Detail``, a redundant
legacy ``end: true``, a state caught in a loop with no way out, and the like.

Layout: ``common.py`` is the toolkit both dialects share (paths, typed field access with
diagnostics, compiled expressions/templates, the per-scope graph checks); ``cloudflow.py`` and
``legacy.py`` hold one dialect each; this module picks the dialect and runs it.

Pure Python: PyYAML and the standard library; no Django, no ``eval``.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from ..graph import DefinitionError, Diagnostic, FlowGraph
from ..yamlsafe import LineMap, YamlError, load_document
from .cloudflow import CloudFlowCompiler
from .common import Compiler
from .common import _fc_function as fc_function_name
from .legacy import LegacyCompiler

__all__ = ["compile_data", "compile_definition", "fc_function_name"]


def compile_definition(
    text: str | bytes,
    *,
    max_bytes: int = 1_048_576,
    known_functions: Container[str] | None = None,
    max_states: int = 1000,
) -> FlowGraph:
    """Parse and validate a definition; raise ``DefinitionError`` listing every problem."""
    try:
        data, lines = load_document(text, max_bytes=max_bytes)
    except YamlError as exc:
        raise DefinitionError([Diagnostic(path="", message=exc.message, line=exc.line)]) from None
    return compile_data(data, lines, known_functions=known_functions, max_states=max_states)


def compile_data(
    data: Any,
    lines: LineMap | None = None,
    *,
    known_functions: Container[str] | None = None,
    max_states: int = 1000,
) -> FlowGraph:
    """Validate already-loaded definition data (``lines`` adds line numbers to diagnostics)."""
    return _dialect(data)(lines, known_functions, max_states).run(data)


def _dialect(data: Any) -> type[Compiler]:
    """The compiler for ``data``'s dialect, chosen by its top-level keys; the plain toolkit
    (which reports what is missing) when it is neither."""
    if isinstance(data, dict):
        if data.get("Type") == "StateMachine":
            return CloudFlowCompiler
        if data.get("version") == "v1" and data.get("type") == "flow":
            return LegacyCompiler
    return Compiler
