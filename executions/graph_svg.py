"""The step graph of a flow version: laid out by Graphviz once, served as sanitised inline SVG.

``dot`` places the nodes; it never decides what reaches the page. Its SVG is parsed and written
again from a whitelist (shapes with their coordinates, text, our own classes): no ``style``, no
``fill``/``stroke``, no scripts, no links of its making. Colours and shapes of statuses come
from CSS classes (``static/flowsite/execution.css``), so a strict Content-Security-Policy holds.

The drawing is a template: every state node carries *slots* (``\\x01<kind>:<node>\\x01``, a
character XML text can never hold) for its status class, symbol, visit count, tooltip and link.
:func:`render` fills them per execution; positions never change, so the live page only swaps
classes and texts. One drawing per flow version (a version never changes) is kept in
``FlowVersionGraph`` and, per process, in memory; a page view never runs Graphviz twice.

Node ids derive from the state's path in the definition (``States[2].Branches[0].States[1]``
-> ``States-2_Branches-0_States-1``): stable for a version, made of ``[A-Za-z0-9_-]`` only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from django.utils.safestring import SafeString, mark_safe

from .engine.graph import FlowGraph, Scope, State, StateKind

log = logging.getLogger(__name__)

# The drawing code's version: a stored drawing made by another version is drawn again.
RENDERER = 1
DOT_TIMEOUT_SECONDS = 20
MAX_DOT_OUTPUT = 16 * 1024 * 1024  # bytes of SVG accepted from dot (1,000 states: ~1.5 MB)
MAX_NAME_CHARS = 40  # a state's name on its node (the full name is its tooltip)
MAX_LABEL_CHARS = 28  # an edge's label (a Choice condition, Catch errors)
SLOT = "\x01"
_NOT_INSTALLED = "Graphviz (dot) is not installed on this server"
_SLOT_RE = re.compile("\x01([A-Z]):([A-Za-z0-9_-]*)\x01")
_SVG_NS = "{http://www.w3.org/2000/svg}"
_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_GEOMETRY = re.compile(r"^[-0-9.,eMCLZHVQSTAmclzhvqsta ]*$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


@lru_cache(maxsize=4096)
def node_key(path: str) -> str:
    """The node id of the state at ``path``: readable, stable, ``[A-Za-z0-9_-]`` only. A path
    too long for that (deep nesting) is named by its digest instead."""
    out = []
    for ch in path:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch == "[":
            out.append("-")
        elif ch == ".":
            out.append("_")
        elif ch != "]":
            out.append(f"x{ord(ch):x}")
    key = "".join(out)
    if not key or len(key) > 120:
        return "h" + hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return key


# --- what the graph holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    key: str
    name: str
    kind: str  # StateKind value
    summary: str  # "Task · fn_name", "Wait 3 s", ...
    depth: int  # nesting level (0: the top level)
    scope: str  # "", "branch 2 of P", "processor of M", ...


@dataclass
class Layout:
    """A drawing template (``svg``, empty when there is none: ``error`` says why), the view
    box, and the states in definition order (for the list beside the drawing)."""

    svg: str
    nodes: list[Node]
    error: str = ""
    width: float = 0.0
    height: float = 0.0
    by_key: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self):
        self.by_key = {n.key: n for n in self.nodes}


def _clean(text: str, limit: int | None = None) -> str:
    """Text fit for a Graphviz label and an SVG text node: control characters, surrogates and
    unassigned code points become U+FFFD (XML cannot hold most of them, and the slots use
    U+0001); bidirectional overrides are dropped (they could disguise a name); shortened."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn"):
            out.append("\ufffd")
        elif "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069":
            continue
        else:
            out.append(ch)
    cleaned = "".join(out)
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


def _summary(st: State) -> str:
    kind = st.kind
    if kind is StateKind.TASK and st.task is not None:
        target = st.task.function or st.task.queue or "computed"
        mode = {"WaitForCustomCallback": " · callback"}.get(str(st.task.mode), "")
        return f"Task · {target}{mode}"
    if kind is StateKind.WAIT and st.wait is not None:
        if st.wait.seconds is not None:
            return f"Wait {st.wait.seconds:g} s"
        return "Wait"
    if kind is StateKind.PARALLEL:
        return f"Parallel · {len(st.branches)} branches"
    if kind is StateKind.MAP:
        return "Map · each item"
    if kind is StateKind.FAIL and st.fail is not None and st.fail.code:
        return f"Fail · {st.fail.code}"
    return str(kind.value)


def graph_nodes(graph: FlowGraph) -> list[Node]:
    """Every state of the graph, in definition order, nested scopes right after their state."""
    nodes: list[Node] = []

    def walk(scope: Scope, depth: int, where: str) -> None:
        for st in scope.states.values():
            nodes.append(
                Node(node_key(st.path), st.name, st.kind.value, _summary(st), depth, where)
            )
            for label, inner in _inner_scopes(st):
                walk(inner, depth + 1, f"{label} of {st.name}")

    walk(graph.root, 0, "")
    return nodes


def _inner_scopes(st: State) -> Iterator[tuple[str, Scope]]:
    for i, branch in enumerate(st.branches):
        yield f"branch {i + 1}", branch
    if st.map is not None:
        yield "processor", st.map.processor
    for i, choice in enumerate(st.choices):
        if choice.target.scope is not None:
            yield f"choice {i + 1}", choice.target.scope
    if st.default is not None and st.default.scope is not None:
        yield "default", st.default.scope


# --- the DOT text ------------------------------------------------------------------------------


def _esc(text: str) -> str:
    """Escape for XML: a Graphviz HTML-like label, and the SVG this module writes."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


class _Dot:
    """Builds the DOT text. Node names in DOT are our keys (safe characters); user text only
    ever appears inside HTML-like labels, escaped."""

    def __init__(self, graph: FlowGraph):
        self.graph = graph
        self.lines: list[str] = []
        self.edges: list[tuple[str, str, dict[str, str]]] = []

    def text(self) -> str:
        self.lines += [
            "digraph flow {",
            '  graph [rankdir=TB nodesep=0.3 ranksep=0.42 pad=0.25 fontname="DejaVu Sans"'
            " fontsize=10 nslimit=4 mclimit=0.6 searchsize=40];",
            '  node [shape=box style=rounded fontname="DejaVu Sans" fontsize=11 height=0.42'
            ' margin="0.16,0.07"];',
            '  edge [fontname="DejaVu Sans" fontsize=9 arrowsize=0.7];',
            '  "__start" [id="m-start" class="m-start" shape=circle label="" width=0.2];',
            '  "__end" [id="m-end" class="m-end" shape=doublecircle label="" width=0.16];',
        ]
        root = self.graph.root
        self.scope(root, "__end", indent="  ")
        self.edge("__start", self.entry_of(root, root.start_at), {})
        self.mark_back_edges()
        for i, (src, dst, attrs) in enumerate(self.edges):
            extra = "".join(f" {k}={v}" for k, v in attrs.items())
            self.lines.append(f'  "{src}" -> "{dst}" [id="e{i}"{extra}];')
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    @staticmethod
    def key(st: State) -> str:
        return node_key(st.path)

    def entry_of(self, scope: Scope, name: str) -> str:
        return self.key(scope.states[name])

    @staticmethod
    def has_join(st: State) -> bool:
        return bool(st.branches) or st.map is not None or any(_inner_scopes(st))

    def exit_of(self, st: State) -> str:
        return self.key(st) + "__join" if self.has_join(st) else self.key(st)

    def edge(self, src: str, dst: str, attrs: dict[str, str]) -> None:
        self.edges.append((src, dst, attrs))

    def node(self, st: State, indent: str) -> None:
        key = self.key(st)
        name = _esc(_clean(st.name, MAX_NAME_CHARS)) or "&#160;"
        summary = _esc(_clean(_summary(st), MAX_NAME_CHARS))
        kind = st.kind.value.lower()
        self.lines.append(
            f'{indent}"{key}" [id="gn-{key}" class="k-{kind}" '
            f'label=<{name}<BR/><FONT POINT-SIZE="9">{summary}</FONT>>];'
        )

    def scope(self, scope: Scope, sink: str, indent: str) -> None:
        for st in scope.states.values():
            if self.has_join(st):
                self.container(st, indent)
            else:
                self.node(st, indent)
            self.out_edges(scope, st, sink)

    def container(self, st: State, indent: str) -> None:
        key = self.key(st)
        kind = st.kind.value.lower()
        self.lines.append(f'{indent}subgraph "cluster_{key}" {{')
        inner = indent + "  "
        self.lines.append(f'{inner}id="c-{key}" class="c-{kind}" label="" style=rounded;')
        self.node(st, inner)
        for n, (label, body) in enumerate(_inner_scopes(st)):
            self.lines.append(f'{inner}subgraph "cluster_{key}__{n}" {{')
            text = _esc(_clean(label.capitalize(), MAX_LABEL_CHARS))
            self.lines.append(
                f'{inner}  id="c-{key}__{n}" class="c-scope" label=<{text}> style=rounded;'
            )
            self.scope(body, key + "__join", inner + "  ")
            self.lines.append(f"{inner}}}")
            if not label.startswith(("choice", "default")):
                self.edge(key, self.entry_of(body, body.start_at), {})
        self.lines.append(
            f'{inner}"{key}__join" [id="j-{key}" class="m-join" shape=point width=0.09 label=""];'
        )
        self.lines.append(f"{indent}}}")

    def out_edges(self, scope: Scope, st: State, sink: str) -> None:
        key = self.key(st)
        after = self.entry_of(scope, st.next) if st.next else sink
        if st.kind is StateKind.CHOICE:
            targets = [(c.condition.text, c.target) for c in st.choices]
            if st.default is not None:
                targets.append(("default", st.default))
            moves_on = False
            for text, target in targets:
                label = {"label": f"<{_esc(_clean(text, MAX_LABEL_CHARS))}>"}
                if target.next is not None:
                    self.edge(key, self.entry_of(scope, target.next), label)
                elif target.scope is not None:
                    self.edge(key, self.entry_of(target.scope, target.scope.start_at), label)
                else:  # legacy: a branch without steps or goto ends the step
                    moves_on = True
                    self.edge(key, after, label)
            if st.default is None and not moves_on:
                # legacy: no branch matched and there is no default: the flow moves on
                self.edge(key, after, {"label": "<otherwise>"})
            if self.has_join(st):
                self.edge(self.exit_of(st), after, {})
        else:
            self.edge(self.exit_of(st), after, {"class": '"x-fail"'} if st.kind is StateKind.FAIL
                      else {})  # fmt: skip
        for rule in st.catch:
            errors = ", ".join(rule.errors) or "all"
            label = f"<catch {_esc(_clean(errors, MAX_LABEL_CHARS))}>"
            self.edge(
                key,
                self.entry_of(scope, rule.next),
                {"label": label, "style": "dashed", "class": '"x-catch"'},
            )

    def mark_back_edges(self) -> None:
        """Loops are drawn as back edges that do not rank their target below their source
        (``constraint=false``), so the flow still reads from top to bottom."""
        out: dict[str, list[int]] = {}
        for i, (src, _dst, _attrs) in enumerate(self.edges):
            out.setdefault(src, []).append(i)
        state: dict[str, int] = {}  # 1: on the path, 2: done
        stack: list[tuple[str, Iterator[int]]] = [("__start", iter(out.get("__start", [])))]
        state["__start"] = 1
        while stack:
            node, it = stack[-1]
            for i in it:
                dst = self.edges[i][1]
                seen = state.get(dst)
                if seen == 1:
                    attrs = self.edges[i][2]
                    attrs["constraint"] = "false"
                    attrs.setdefault("class", '"x-loop"')
                elif seen is None:
                    state[dst] = 1
                    stack.append((dst, iter(out.get(dst, []))))
                    break
            else:
                state[node] = 2
                stack.pop()


def dot_source(graph: FlowGraph) -> str:
    return _Dot(graph).text()


# --- running dot and rewriting its SVG ---------------------------------------------------------


class DrawingError(Exception):
    pass


def run_dot(source: str) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise DrawingError(_NOT_INSTALLED)
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program; the DOT text goes to its stdin
            [dot, "-Tsvg"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DrawingError(f"Graphviz took longer than {DOT_TIMEOUT_SECONDS} s") from None
    except OSError as exc:
        raise DrawingError(f"Graphviz could not run: {exc.strerror}") from None
    if done.returncode != 0:
        first = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise DrawingError(f"Graphviz failed: {first[0][:200] if first else done.returncode}")
    if len(done.stdout) > MAX_DOT_OUTPUT:
        raise DrawingError("the drawing is too large")
    return done.stdout.decode("utf-8")


def _geometry(value: str | None) -> str | None:
    if value is None or not _GEOMETRY.match(value):
        return None
    return value


def _num(value: str | None) -> str | None:
    if value is None or not _NUMBER.match(value.strip()):
        return None
    return value.strip()


def _shapes(group: ET.Element) -> tuple[list[str], list[float], list[float]]:
    """The group's shapes written again (coordinates only), and every x and y they touch."""
    out: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    for el in group:
        tag = el.tag.removeprefix(_SVG_NS)
        if tag in ("path", "polygon", "polyline"):
            attr = "d" if tag == "path" else "points"
            value = _geometry(el.get(attr))
            if value is None:
                continue
            out.append(f'<{tag} {attr}="{value}"/>')
            numbers = [float(n) for n in _NUMBERS.findall(value)]
            xs += numbers[0::2]
            ys += numbers[1::2]
        elif tag == "ellipse":
            cx, cy, rx, ry = (_num(el.get(a)) for a in ("cx", "cy", "rx", "ry"))
            if None in (cx, cy, rx, ry):
                continue
            out.append(f'<ellipse cx="{cx}" cy="{cy}" rx="{rx}" ry="{ry}"/>')
            xs += [float(cx) - float(rx), float(cx) + float(rx)]
            ys += [float(cy) - float(ry), float(cy) + float(ry)]
    return out, xs, ys


def _texts(group: ET.Element, default_class: str) -> list[str]:
    out = []
    for el in group:
        if el.tag.removeprefix(_SVG_NS) != "text":
            continue
        x, y = _num(el.get("x")), _num(el.get("y"))
        if x is None or y is None:
            continue
        anchor = el.get("text-anchor")
        anchor = anchor if anchor in ("start", "middle", "end") else "middle"
        size = _num(el.get("font-size")) or "11"
        css = default_class
        if default_class == "fg-name" and float(size) < 10:
            css = "fg-sub"  # a node's second line (its kind)
        text = _clean("".join(el.itertext()))
        out.append(
            f'<text x="{x}" y="{y}" text-anchor="{anchor}" class="{css}">{_esc(text)}</text>'
        )
    return out


_CLASS_TOKEN = re.compile(r"^[a-z][a-z0-9-]*$")


def _our_classes(group: ET.Element, drop: str) -> list[str]:
    """The classes we gave this element in the DOT text (``k-task``, ``c-parallel``...)."""
    return [c for c in (group.get("class") or "").split() if c != drop and _CLASS_TOKEN.match(c)]


def rewrite(svg_text: str, nodes: dict[str, Node]) -> tuple[str, float, float]:
    """dot's SVG written again from a whitelist, with slots on every state node."""
    svg_text = re.sub(r"<!DOCTYPE[^>]*>", "", svg_text, count=1)
    root = ET.fromstring(svg_text)
    box = [float(n) for n in _NUMBERS.findall(root.get("viewBox", ""))]
    if len(box) != 4:
        raise DrawingError("Graphviz gave no view box")
    width, height = box[2], box[3]
    graph = root.find(f"{_SVG_NS}g")
    if graph is None:
        raise DrawingError("Graphviz gave no drawing")
    move = re.search(r"translate\(\s*(-?[\d.]+)[ ,]+(-?[\d.]+)\s*\)", graph.get("transform", ""))
    tx, ty = (move.group(1), move.group(2)) if move else ("0", "0")
    clusters: list[str] = []
    edges: list[str] = []
    drawn: list[str] = []
    for group in graph.findall(f"{_SVG_NS}g"):
        kinds = (group.get("class") or "").split()
        gid = group.get("id") or ""
        shapes, xs, ys = _shapes(group)
        if "cluster" in kinds:
            css = " ".join(f"fg-cluster--{c[2:]}" for c in _our_classes(group, "cluster"))
            clusters.append(
                f'<g class="fg-cluster {css}">{"".join(shapes)}'
                f"{''.join(_texts(group, 'fg-clabel'))}</g>"
            )
        elif "edge" in kinds:
            css = " ".join(f"fg-edge--{c[2:]}" for c in _our_classes(group, "edge"))
            edges.append(
                f'<g class="fg-edge {css}">{"".join(shapes)}'
                f"{''.join(_texts(group, 'fg-elabel'))}</g>"
            )
        elif "node" in kinds and gid.startswith("gn-") and gid[3:] in nodes and xs:
            drawn.append(_state_node(nodes[gid[3:]], group, shapes, xs, ys))
        elif "node" in kinds and gid.startswith(("m-", "j-")):
            marker = "join" if gid.startswith("j-") else gid[2:]
            if marker in ("start", "end", "join"):
                drawn.append(f'<g class="fg-marker fg-marker--{marker}">{"".join(shapes)}</g>')
    body = "".join(clusters) + "".join(edges) + "".join(drawn)
    return f'<g transform="translate({tx} {ty})">{body}</g>', width, height


def _state_node(node: Node, group: ET.Element, shapes, xs, ys) -> str:
    key = node.key
    left, top, right = min(xs), min(ys), max(xs)
    texts = "".join(_texts(group, "fg-name"))
    status = (
        f'<g class="fg-status"><circle cx="{left + 2:.1f}" cy="{top + 2:.1f}" r="8"/>'
        f'<text x="{left + 2:.1f}" y="{top + 5.5:.1f}" text-anchor="middle" class="fg-icon">'
        f"{SLOT}I:{key}{SLOT}</text></g>"
    )
    visits = (
        f'<g class="fg-visits"><rect x="{right - 24:.1f}" y="{top - 8:.1f}" width="30" '
        f'height="15" rx="7.5"/><text x="{right - 9:.1f}" y="{top + 3:.1f}" '
        f'text-anchor="middle" class="fg-count">{SLOT}V:{key}{SLOT}</text></g>'
    )
    title = f"{_esc(_clean(node.name))} ({_esc(node.kind)}){SLOT}T:{key}{SLOT}"
    return (
        f"{SLOT}A:{key}{SLOT}"
        f'<g id="gn-{key}" class="fg-node fg-node--{node.kind.lower()} {SLOT}S:{key}{SLOT}" '
        f'data-node="{key}"><title>{title}</title>'
        f'<g class="fg-shape">{"".join(shapes)}</g>{texts}{status}{visits}</g>'
        f"{SLOT}Z:{key}{SLOT}"
    )


def draw(graph: FlowGraph) -> Layout:
    """Lay the graph out with Graphviz (slow: call :func:`layout_for`, which keeps it)."""
    nodes = graph_nodes(graph)
    try:
        svg, width, height = rewrite(run_dot(dot_source(graph)), {n.key: n for n in nodes})
    except DrawingError as exc:
        return Layout(svg="", nodes=nodes, error=str(exc))
    except ET.ParseError as exc:  # pragma: no cover - dot writes well-formed XML
        log.warning("unreadable SVG from Graphviz: %s", exc)
        return Layout(svg="", nodes=nodes, error="Graphviz gave an unreadable drawing")
    return Layout(svg=svg, nodes=nodes, width=width, height=height)


# --- the kept drawing ------------------------------------------------------------------------


def _graph_of(version) -> FlowGraph:
    # The runtime's per-process cache of compiled versions (keyed by id and digest).
    from .runtime.transition import compiled_version  # noqa: PLC0415

    return compiled_version(version.pk, version.digest)


@lru_cache(maxsize=64)
def _kept(version_id: int, digest: str, renderer: int) -> Layout:
    """The drawing of one version, from the database or drawn now and stored there."""
    from .models import FlowVersion, FlowVersionGraph  # noqa: PLC0415

    version = FlowVersion(pk=version_id, digest=digest)
    nodes = graph_nodes(_graph_of(version))
    row = FlowVersionGraph.objects.filter(pk=version_id).first()
    if row is not None and row.digest == digest and row.renderer == renderer:
        # Stored as "<width> <height>" on the first line, then the template.
        size, _, svg = row.svg.partition("\n")
        numbers = [float(n) for n in _NUMBERS.findall(size)]
        if svg and len(numbers) == 2:
            return Layout(svg=svg, nodes=nodes, width=numbers[0], height=numbers[1])
        return Layout(svg="", nodes=nodes, error=row.error or "no drawing")
    layout = draw(_graph_of(version))
    if layout.svg or layout.error != _NOT_INSTALLED:
        # A failed drawing is kept too (a definition Graphviz cannot lay out in time must
        # not cost every page view that time again); a missing Graphviz is not.
        stored = f"{layout.width:.2f} {layout.height:.2f}\n{layout.svg}" if layout.svg else ""
        FlowVersionGraph.objects.update_or_create(
            pk=version_id,
            defaults={
                "digest": digest,
                "renderer": renderer,
                "svg": stored,
                "error": layout.error[:300],
            },
        )
    return layout


def layout_for(version) -> Layout:
    """The drawing of ``version`` (a FlowVersion with ``pk`` and ``digest``)."""
    return _kept(version.pk, version.digest, RENDERER)


# --- filling the slots -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    status: str  # a StepStatus value, or "not_reached"
    visits: int = 0
    label: str = ""  # tooltip text: "Succeeded, 3 visits"


# Symbols drawn in the status dot (a word goes with them in the tooltip and the state list).
SYMBOLS = {
    "not_reached": "",
    "running": "▶",
    "waiting_callback": "✉",
    "waiting_timer": "◷",
    "retrying": "↻",
    "succeeded": "✓",
    "failed": "✕",
    "caught": "↷",
    "cancelled": "■",
}


def render(
    layout: Layout,
    statuses: dict[str, NodeStatus] | None = None,
    link: Callable[[str], str] | None = None,
    *,
    label: str = "Step graph",
) -> SafeString:
    """The SVG of ``layout`` with each node's status (``statuses``: by node key; missing
    ones are not reached) and, when ``link`` gives a URL per node key, each node a link that
    loads its visits. Everything filled in is escaped here; the template holds no user text
    that was not escaped when it was drawn."""
    if not layout.svg:
        return mark_safe("")  # noqa: S308 - nothing
    plain = statuses is None
    statuses = statuses or {}
    idle = NodeStatus("not_reached")

    def fill(match: re.Match) -> str:
        kind, key = match.group(1), match.group(2)
        st = statuses.get(key, idle)
        if kind == "S":
            if plain:
                return ""
            return f"is-{st.status.replace('_', '-')}" + (" has-visits" if st.visits > 1 else "")
        if kind == "I":
            return "" if plain else SYMBOLS.get(st.status, "")
        if kind == "V":
            return f"×{st.visits}" if st.visits > 1 else ""
        if kind == "T":
            return "" if plain else _esc(f" — {st.label}" if st.label else "")
        if kind == "A":
            if link is None:
                return ""
            url = _esc(link(key))
            name = layout.by_key[key].name if key in layout.by_key else key
            title = _esc(f"{_clean(name)}: {st.label or 'not reached'}")
            return (
                f'<a href="{url}" class="fg-link" hx-get="{url}" hx-target="#state-panel" '
                f'hx-swap="innerHTML" aria-label="{title}">'
            )
        if kind == "Z":
            return "</a>" if link is not None else ""
        return ""  # pragma: no cover

    body = _SLOT_RE.sub(fill, layout.svg)
    css = "fgraph fgraph--plain" if plain else "fgraph"
    return mark_safe(  # noqa: S308 - built from escaped parts only (see module docstring)
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" '
        f'viewBox="0 0 {layout.width:.2f} {layout.height:.2f}" width="{layout.width:.0f}" '
        f'height="{layout.height:.0f}" role="group" aria-label="{_esc(label)}">{body}</svg>'
    )


def flow_svg(flow_version) -> SafeString:
    """The step graph of a flow version without statuses (for the flow page): safe markup,
    or an empty string when it cannot be drawn."""
    return render(layout_for(flow_version), None, None, label="Step graph of the flow")
