"""The step graph (``executions/graph_svg.py``): Graphviz lays it out once per flow version; its
SVG is written again from a whitelist, so hostile state names stay text and a strict CSP holds."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from executions import graph_svg
from executions.engine.compiler import compile_definition
from executions.models import FlowVersionGraph
from flowsite.access import SYSTEM

from .test_execution_readmodel import HOSTILE_FLOW, HOSTILE_NAMES, RETRY_CATCH_FLOW, make_flow

DEMO = Path(__file__).resolve().parents[2] / "demo" / "flows"
SVG = "{http://www.w3.org/2000/svg}"
# What the rewritten SVG may hold: nothing else, whatever dot wrote.
ELEMENTS = {"svg", "g", "a", "title", "path", "polygon", "polyline", "ellipse", "circle", "rect",
            "text"}  # fmt: skip
ATTRIBUTES = {
    "xmlns", "class", "viewBox", "width", "height", "role", "aria-label", "transform", "id",
    "data-node", "d", "points", "cx", "cy", "rx", "ry", "r", "x", "y", "text-anchor", "href",
    "hx-get", "hx-target", "hx-swap",
}  # fmt: skip


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def tag(el: ET.Element) -> str:
    return el.tag.removeprefix(SVG)


def check_clean(svg: str) -> ET.Element:
    """The SVG is well-formed XML with only whitelisted elements and attributes, no styles,
    no scripts, no event handlers, and links only to our own state URLs."""
    root = parse(svg)
    for el in root.iter():
        assert tag(el) in ELEMENTS, tag(el)
        for name, value in el.attrib.items():
            assert name in ATTRIBUTES, (tag(el), name)
            if name in ("href", "hx-get"):
                assert value.startswith("/x/"), value
            if name == "id":
                assert re.fullmatch(r"gn-[A-Za-z0-9_-]+", value), value
    assert "<script" not in svg and "<style" not in svg
    return root


def draw(definition: str) -> graph_svg.Layout:
    layout = graph_svg.draw(compile_definition(definition))
    assert not layout.error, layout.error
    return layout


def nodes_of(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-node"): g for g in root.iter(f"{SVG}g") if g.get("data-node")}


# --- node ids --------------------------------------------------------------------------------


def test_node_keys_are_stable_and_safe():
    assert graph_svg.node_key("States[2].Branches[0].States[1]") == "States-2_Branches-0_States-1"
    assert graph_svg.node_key("steps[1].choices[0].steps[0]") == "steps-1_choices-0_steps-0"
    odd = graph_svg.node_key("States[0].<x y>")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", odd)
    long = "States[0]" + ".Branches[0].States[0]" * 20
    key = graph_svg.node_key(long)
    assert key == graph_svg.node_key(long) and len(key) == 33 and key.startswith("h")
    assert graph_svg.node_key("") != ""


# --- the drawing -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DEMO.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_state_is_a_node_with_its_status_slots(path):
    layout = draw(path.read_text())
    svg = graph_svg.render(layout, {}, lambda key: f"/x/{key}/")
    root = check_clean(svg)
    nodes = nodes_of(root)
    assert set(nodes) == {n.key for n in layout.nodes}
    for node in layout.nodes:
        g = nodes[node.key]
        assert g.get("id") == f"gn-{node.key}"
        assert "is-not-reached" in g.get("class")
        assert g.find(f"{SVG}title").text.startswith(node.name)
        assert g.find(f".//{SVG}text").text  # the name (maybe shortened)
    # start and end markers
    markers = [g.get("class") for g in root.iter(f"{SVG}g") if "fg-marker" in g.get("class", "")]
    assert "fg-marker fg-marker--start" in markers and "fg-marker fg-marker--end" in markers


def test_choice_branches_are_labelled_and_loops_are_back_edges():
    layout = draw((DEMO / "demo-polling.yaml").read_text())
    source = graph_svg.dot_source(compile_definition((DEMO / "demo-polling.yaml").read_text()))
    # the loop IsRenderDone -> WaitBeforePoll does not rank its target below its source
    loop = [line for line in source.splitlines() if '"States-4" -> "States-2"' in line]
    assert len(loop) == 1 and "constraint=false" in loop[0]
    root = parse(graph_svg.render(layout))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "fg-elabel"]
    assert '$Input.status == "done"' in labels and "default" in labels
    assert any(lbl.startswith("$Input.polls > ") and lbl.endswith("…") for lbl in labels)
    edges = [g.get("class") for g in root.iter(f"{SVG}g") if "fg-edge" in g.get("class", "")]
    assert sum("fg-edge--loop" in c for c in edges) == 1


def test_parallel_branches_and_map_processors_are_nested_clusters():
    root = parse(graph_svg.render(draw((DEMO / "demo-fanout.yaml").read_text())))
    clusters = [g for g in root.iter(f"{SVG}g") if "fg-cluster" in g.get("class", "")]
    kinds = sorted(g.get("class") for g in clusters)
    assert kinds.count("fg-cluster fg-cluster--scope") == 3  # 1 processor + 2 branches
    assert "fg-cluster fg-cluster--map" in kinds and "fg-cluster fg-cluster--parallel" in kinds
    labels = {t.text for g in clusters for t in g.iter(f"{SVG}text")}
    assert {"Processor", "Branch 1", "Branch 2"} <= labels


def test_catch_edges_are_dashed_and_labelled():
    source = graph_svg.dot_source(compile_definition(RETRY_CATCH_FLOW))
    (catch,) = [line for line in source.splitlines() if "x-catch" in line]
    assert '"States-0" -> "States-1"' in catch and "style=dashed" in catch
    assert "label=<catch FnF.ALL>" in catch
    root = parse(graph_svg.render(draw(RETRY_CATCH_FLOW)))
    assert any("fg-edge--catch" in g.get("class", "") for g in root.iter(f"{SVG}g"))


def test_legacy_choice_with_inline_steps_is_a_cluster():
    definition = """\
version: v1
type: flow
steps:
  - type: choice
    name: Pick
    choices:
      - condition: $.x == 1
        steps:
          - type: pass
            name: Inline
    default:
      goto: Last
  - type: pass
    name: Last
"""
    layout = draw(definition)
    root = check_clean(graph_svg.render(layout, {}, lambda key: f"/x/{key}/"))
    assert set(nodes_of(root)) == {"steps-0", "steps-0_choices-0_steps-0", "steps-1"}
    assert [n.scope for n in layout.nodes] == ["", "choice 1 of Pick", ""]


def test_hostile_state_names_are_text_in_the_svg():
    layout = draw(HOSTILE_FLOW)
    svg = graph_svg.render(layout, {}, lambda key: f"/x/{key}/")
    root = check_clean(svg)
    titles = [g.find(f"{SVG}title").text for g in nodes_of(root).values()]
    for name in HOSTILE_NAMES:
        assert any(t.startswith(f"{name} (") for t in titles), name
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "<script>alert(1)</script>" in texts  # as text, escaped in the markup
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    # the Choice condition on its edge, shortened, as text
    assert any("&lt;/text&gt;" in part for part in svg.split("fg-elabel")[1:])
    # the Fail code in the node's second line
    assert "&lt;b&gt;bold&lt;/b&gt;" in svg


def test_labels_lose_control_characters_and_disguises():
    assert graph_svg._clean("a\x01b\x00c\u202ed\ud800") == "a\ufffdb\ufffdcd\ufffd"
    assert graph_svg._clean("x" * 50, 40) == "x" * 39 + "…"
    assert graph_svg._esc("<a href='x'>&\"") == "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"


def test_statuses_and_visits_fill_the_slots_and_nothing_else():
    layout = draw((DEMO / "demo-polling.yaml").read_text())
    statuses = {
        "States-2": graph_svg.NodeStatus("waiting_timer", 3, 'Waiting "on" <a timer>'),
        "States-0": graph_svg.NodeStatus("succeeded", 1, "Succeeded"),
    }
    root = check_clean(graph_svg.render(layout, statuses, lambda key: f"/x/{key}/"))
    nodes = nodes_of(root)
    wait = nodes["States-2"]
    assert wait.get("class").split() == [
        "fg-node", "fg-node--wait", "is-waiting-timer", "has-visits"
    ]  # fmt: skip
    assert wait.find(f".//{SVG}text[@class='fg-count']").text == "×3"
    assert wait.find(f".//{SVG}text[@class='fg-icon']").text == "◷"
    assert wait.find(f"{SVG}title").text.endswith('— Waiting "on" <a timer>')
    assert "has-visits" not in nodes["States-0"].get("class")
    assert nodes["States-5"].get("class").endswith("is-not-reached")
    links = list(root.iter(f"{SVG}a"))
    assert len(links) == len(layout.nodes)
    assert all(a.get("hx-target") == "#state-panel" for a in links)


def test_the_flow_page_drawing_has_no_statuses_and_no_links():
    layout = draw((DEMO / "demo-approval.yaml").read_text())
    svg = graph_svg.render(layout)
    root = check_clean(svg)
    assert "fgraph--plain" in root.get("class")
    assert not list(root.iter(f"{SVG}a"))
    assert all("is-" not in g.get("class") for g in nodes_of(root).values())


# --- kept once per version ---------------------------------------------------------------------


@pytest.fixture
def count_dot(monkeypatch):
    calls = []
    real = subprocess.run

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(graph_svg.subprocess, "run", counting)
    graph_svg._kept.cache_clear()
    yield calls
    graph_svg._kept.cache_clear()


def test_graphviz_runs_once_per_version_and_the_drawing_is_kept(db, count_dot):
    flow = make_flow("kept", RETRY_CATCH_FLOW)
    version = flow.versions.get()
    first = graph_svg.flow_svg(version)
    assert first and len(count_dot) == 1
    assert graph_svg.flow_svg(version) == first and len(count_dot) == 1
    row = FlowVersionGraph.objects.get(pk=version.pk)
    assert row.digest == version.digest and row.renderer == graph_svg.RENDERER
    # another process: nothing in memory, the stored drawing is read, Graphviz is not run
    graph_svg._kept.cache_clear()
    assert graph_svg.flow_svg(version) == first and len(count_dot) == 1
    # a drawing made by older drawing code is drawn again
    FlowVersionGraph.objects.filter(pk=version.pk).update(renderer=0)
    graph_svg._kept.cache_clear()
    assert graph_svg.flow_svg(version) == first and len(count_dot) == 2


def test_a_drawing_that_fails_is_kept_as_failed(db, count_dot, monkeypatch):
    def too_slow(*args, **kwargs):
        count_dot.append(args)
        raise subprocess.TimeoutExpired(cmd="dot", timeout=graph_svg.DOT_TIMEOUT_SECONDS)

    monkeypatch.setattr(graph_svg.subprocess, "run", too_slow)
    flow = make_flow("slow", RETRY_CATCH_FLOW)
    version = flow.versions.get()
    assert graph_svg.flow_svg(version) == ""
    graph_svg._kept.cache_clear()
    layout = graph_svg.layout_for(version)
    assert layout.svg == "" and "longer than" in layout.error
    assert len(count_dot) == 1  # not run again for the next page view
    assert [n.name for n in layout.nodes] == ["Flaky", "Recover", "Done"]


def test_without_graphviz_nothing_is_kept(db, count_dot, monkeypatch):
    monkeypatch.setattr(graph_svg.shutil, "which", lambda name: None)
    flow = make_flow("nodot", RETRY_CATCH_FLOW)
    version = flow.versions.get()
    assert graph_svg.layout_for(version).error == graph_svg._NOT_INSTALLED
    assert not FlowVersionGraph.objects.filter(pk=version.pk).exists()


def test_a_large_definition_is_drawn_in_bounded_time():
    lines = ["Type: StateMachine", "Name: big", "SpecVersion: v1", "StartAt: S0", "States:"]
    for i in range(1000):
        if i % 10 == 5:
            lines += [
                "  - Type: Choice", f"    Name: S{i}", "    Branches:",
                f"      - Condition: $Input.x == {i}", f"        Next: S{i - 4}",
                f"    Default: S{i + 1}",
            ]  # fmt: skip
        else:
            lines += ["  - Type: Pass", f"    Name: S{i}"]
            lines += [f"    Next: S{i + 1}"] if i < 999 else ["    End: true"]
    layout = draw("\n".join(lines) + "\n")
    assert len(layout.nodes) == 1000
    svg = graph_svg.render(layout, {}, lambda key: f"/x/{key}/")
    assert len(nodes_of(parse(svg))) == 1000
    assert len(svg) < graph_svg.MAX_DOT_OUTPUT


def test_flow_versions_are_drawn_for_the_flow_page(db):
    flow = make_flow("page", RETRY_CATCH_FLOW)
    from executions.services import flow_update

    flow_update(flow=flow, definition=RETRY_CATCH_FLOW.replace("Recover", "Heal"), actor=SYSTEM)
    first, second = flow.versions.order_by("version")
    assert "Recover" in graph_svg.flow_svg(first) and "Heal" not in graph_svg.flow_svg(first)
    assert "Heal" in graph_svg.flow_svg(second)
