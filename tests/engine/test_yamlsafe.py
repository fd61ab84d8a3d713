"""Safe YAML loading: refusals, YAML 1.2 core scalars, line numbers."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from executions.engine.yamlsafe import LineMap, YamlError, load_document


def load(text):
    return load_document(text)[0]


def error_of(text, **kwargs) -> YamlError:
    with pytest.raises(YamlError) as info:
        load_document(text, **kwargs)
    return info.value


# --- refusals -------------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_fast_and_small():
    text = billion_laughs(9)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        err = error_of(text)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.message == "YAML anchors and aliases are not allowed"
    assert err.line == 1
    assert elapsed < 0.1
    assert peak < 1_000_000


def test_alias_bomb_in_flow_style_is_rejected():
    text = "{a: &a [x, x], b: [*a, *a]}"
    assert error_of(text).message == "YAML anchors and aliases are not allowed"


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\n",
        "a: &x {b: 1}\n",
        "- &x [1]\n",
        "base: &base {a: 1}\nother:\n  <<: *base\n",
    ],
)
def test_any_anchor_is_rejected(text):
    assert error_of(text).message == "YAML anchors and aliases are not allowed"


def test_alias_alone_is_rejected():
    # an alias to an undefined anchor is a parse error; either way it is refused
    with pytest.raises(YamlError):
        load_document("a: *nothing\n")


def test_duplicate_key_names_both_lines():
    text = "Type: StateMachine\nStates: []\nName: x\nStates: []\n"
    err = error_of(text)
    assert err.message == "duplicate key 'States' (line 4, first at line 2)"
    assert err.line == 4


def test_duplicate_key_in_nested_mapping():
    text = "a:\n  b: 1\n  c: 2\n  b: 3\n"
    assert error_of(text).message == "duplicate key 'b' (line 4, first at line 2)"


def test_same_key_in_sibling_mappings_is_fine():
    assert load("- {a: 1}\n- {a: 2}\n") == [{"a": 1}, {"a": 2}]


def test_size_cap_is_checked_before_parsing():
    text = "a: " + "x" * (1_048_576 - 3)
    assert len(text.encode()) == 1_048_576
    assert load(text)["a"].startswith("x")
    err = error_of(text + "x")
    assert err.message == "the definition is 1048577 bytes; at most 1048576 are allowed"


def test_size_cap_counts_utf8_bytes_not_characters():
    text = "a: " + "超" * 10  # 3 + 30 bytes
    assert load_document(text, max_bytes=33)[0] == {"a": "超" * 10}
    assert error_of(text + "x", max_bytes=33).message.startswith("the definition is 34 bytes")


def test_size_cap_rejects_huge_garbage_without_parsing():
    # not even valid YAML: the size check comes first
    err = error_of("{[" * 600_000)
    assert "at most" in err.message


def test_depth_cap():
    ok = "a: " + "[" * 63 + "]" * 63
    load_document(ok)
    err = error_of("a: " + "[" * 64 + "]" * 64)
    assert err.message == "the definition is nested deeper than 64 levels"
    assert error_of("a: [[[1]]]", max_depth=3).message.endswith("3 levels")


def test_node_cap():
    text = "[" + ",".join(["1"] * 20) + "]"
    load_document(text, max_nodes=21)
    assert error_of(text, max_nodes=20).message == "the definition has more than 20 YAML nodes"


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['echo hi']",
        "a: !!python/object/apply:os.system ['echo hi']\n",
        "a: !!python/name:os.system\n",
        "a: !custom 1\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!timestamp 2024-01-01\n",
        "a: !!set {x}\n",
        "a: !!omap [{b: 1}]\n",
    ],
)
def test_unsafe_and_custom_tags_are_rejected(text):
    assert "is not allowed" in error_of(text).message


def test_core_tags_are_allowed():
    assert load("a: !!str 012\nb: !!int '12'\nc: !!float 1\nd: !!bool 'true'\ne: !!null ''\n") == {
        "a": "012",
        "b": 12,
        "c": 1.0,
        "d": True,
        "e": None,
    }
    assert "not a valid !!int" in error_of("a: !!int abc\n").message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1: a\n", "mapping keys must be strings, got number 1; quote it"),
        ("true: a\n", "mapping keys must be strings, got boolean true; quote it"),
        ("~: a\n", "mapping keys must be strings, got null; quote it"),
        ("? [a, b]\n: 1\n", "mapping keys must be strings, got a collection"),
        ("{a: 1}: 2\n", "mapping keys must be strings, got a collection"),
    ],
)
def test_non_string_keys_are_rejected(text, message):
    assert error_of(text).message == message


def test_quoted_keys_are_strings():
    assert load("'1': a\n\"true\": b\n") == {"1": "a", "true": "b"}


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n", "---\n...\n", "~\n"])
def test_empty_document(text):
    assert error_of(text).message == "the definition is empty"


def test_multiple_documents_are_rejected():
    err = error_of("a: 1\n---\nb: 2\n")
    assert err.message == "only one YAML document is allowed"
    assert err.line == 2


def test_syntax_error_has_a_line():
    err = error_of("a: 1\nb: [1, 2\nc: 3\n")
    assert err.message.startswith("invalid YAML:")
    assert err.line is not None


def test_tab_indentation_error():
    err = error_of("a:\n\tb: 1\n")
    assert err.message.startswith("invalid YAML:")
    assert err.line == 2


def test_invalid_utf8_bytes():
    assert error_of(b"a: \xff\xfe\n").message == "the definition is not valid UTF-8 text"


def test_bytes_and_bom():
    assert load(b"a: 1") == {"a": 1}
    assert load(b"\xef\xbb\xbfa: 1") == {"a": 1}
    assert load("\ufeffa: 1") == {"a": 1}


# --- scalars --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("on", "on"),
        ("off", "off"),
        ("On", "On"),
        ("Off", "Off"),
        ("yes", "yes"),
        ("Yes", "Yes"),
        ("No", "No"),
        ("n", "n"),
        ("y", "y"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("null", None),
        ("Null", None),
        ("~", None),
        ("", None),
        ("12", 12),
        ("-12", -12),
        ("+12", 12),
        ("0", 0),
        ("012", "012"),
        ("-012", "-012"),
        ("00", "00"),
        ("0x1F", 31),
        ("0o17", 15),
        ("0b101", "0b101"),
        ("1_000", "1_000"),
        ("1.5", 1.5),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1.5e-3", 0.0015),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("12:30:00", "12:30:00"),
        ("1:20", "1:20"),
        ("v1", "v1"),
        ("$Input.x", "$Input.x"),
        ("超时", "超时"),
    ],
)
def test_plain_scalar_resolution(text, value):
    loaded = load(f"k: {text}\n")["k"]
    assert loaded == value
    assert type(loaded) is type(value)


@pytest.mark.parametrize("text", ["'12'", '"true"', "'null'", '"~"', "'1.5'", '""', "'on'"])
def test_quoted_scalars_are_strings(text):
    loaded = load(f"k: {text}\n")["k"]
    assert isinstance(loaded, str)


def test_block_scalars_are_strings():
    assert load("k: |\n  12\n") == {"k": "12\n"}
    assert load("k: >-\n  true\n") == {"k": "true"}


@pytest.mark.parametrize("text", [".inf", "-.inf", ".NaN", ".nan", "+.INF"])
def test_non_json_floats_are_rejected(text):
    err = error_of(f"k: {text}\n")
    assert "is not a JSON number" in err.message
    assert err.line == 1


def test_float_overflow_is_rejected():
    assert "too large" in error_of("k: 1e999\n").message


def test_big_integers_are_exact():
    assert load("k: 123456789012345678901234567890\n")["k"] == 123456789012345678901234567890
    assert load("k: -9223372036854775808\n")["k"] == -(2**63)


@pytest.mark.parametrize(
    "text",
    ["9" * 309, "-" + "9" * 309, "9" * 401, "9" * 5000, "0x" + "f" * 300, "0o" + "7" * 400,
     "1" + "0" * 100_000],
)  # fmt: skip
def test_integers_beyond_float_range_are_rejected(text):
    # JSON numbers must fit a double; int() of over 4,300 digits would even raise ValueError.
    err = error_of(f"k: {text}\n")
    assert err.message.startswith("the number ") and err.message.endswith(" is too large")
    assert len(err.message) < 100
    assert err.line == 1


def test_integers_up_to_float_range_are_kept():
    assert load(f"k: {10**308}\n")["k"] == 10**308


# --- JSON and lines -------------------------------------------------------------------------


def test_json_input():
    doc = {
        "Type": "StateMachine",
        "States": [{"Name": "A", "Type": "Pass", "End": True, "X": None, "N": 1.5, "S": "012"}],
    }
    assert load(json.dumps(doc)) == doc
    assert load(json.dumps(doc, indent=2)) == doc


def test_json_duplicate_keys_are_rejected_too():
    assert error_of('{"a": 1, "a": 2}').message.startswith("duplicate key 'a'")


def test_line_lookups():
    text = (
        "Type: StateMachine\n"  # 1
        "StartAt: A\n"  # 2
        "States:\n"  # 3
        "  - Name: A\n"  # 4
        "    Type: Pass\n"  # 5
        "    Next: B\n"  # 6
        "  - Name: B\n"  # 7
        "    Type: Choice\n"  # 8
        "    Branches:\n"  # 9
        "      - Condition: $Input.x > 1\n"  # 10
        "        Next: A\n"  # 11
        "    Default: A\n"  # 12
    )
    value, lines = load_document(text)
    assert isinstance(lines, LineMap)
    assert value["States"][1]["Branches"][0]["Next"] == "A"
    assert lines.get(()) == 1
    assert lines.get(("Type",)) == 1
    assert lines.get(("States",)) == 3
    assert lines.get(("States", 0)) == 4
    assert lines.get(("States", 0, "Next")) == 6
    assert lines.get(["States", 1, "Type"]) == 8
    assert lines.get(("States", 1, "Branches", 0)) == 10
    assert lines.get(("States", 1, "Branches", 0, "Next")) == 11
    assert lines.get(("States", 1, "Default")) == 12
    assert lines.get(("States", 5)) is None
    assert lines.get(("States", 0, "End")) is None
    assert lines.nearest(("States", 0, "End")) == 4
    assert lines.nearest(("States", 1, "Branches", 0, "Condition", "deeper")) == 10
    assert ("States", 0) in lines


def test_line_lookups_in_json():
    text = '{\n  "a": [\n    1,\n    {"b": 2}\n  ]\n}\n'
    _, lines = load_document(text)
    assert lines.get(("a",)) == 2
    assert lines.get(("a", 0)) == 3
    assert lines.get(("a", 1, "b")) == 4


def test_error_as_diagnostic():
    err = error_of("a: 1\na: 2\n")
    diag = err.as_diagnostic()
    assert diag.path == ""
    assert diag.line == 2
    assert diag.message.startswith("duplicate key")
    assert str(err) == "line 2: duplicate key 'a' (line 2, first at line 1)"
