"""Strict chapter inputs: YAML 1.2 values, duplicate keys, list item types and parameter rules.

Every bad input has a test asserting its message; the rules are checked by ``ntkbook run``
before the kernel starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ntkbook.book.errors import UsageError
from ntkbook.book.presets import (
    load_yaml,
    parse_override,
    parse_parameters_source,
    parse_rule,
    resolve_parameters,
)
from ntkbook.book.project import Project
from ntkbook.cli import main

#: A chapter whose parameters cell declares rules; its code leaves a marker file when it runs.
RULES_CHAPTER = {
    "parameters": (
        "n_train = 50  # training samples [>= 1]\n"
        "n_probe = 20  # probe samples, taken from the training set [>= 1, <= n_train]\n"
        "epochs = 2  # training epochs [>= 1]\n"
        "learning_rate = 0.1  # step size [> 0, <= 1]\n"
        'activation = "tanh"  # hidden activation [in: tanh, relu]\n'
        "hidden = [8, 8]  # hidden widths [>= 1]\n"
        "radii = [0.3, 1.5]  # µm\n"
        'shapes = ["sphere"]  # [in: sphere, prolate, oblate]\n'
        "seed = 0  # see [1]\n"
    ),
    "code": ["open('kernel_started', 'w').write('yes')"],
}


@pytest.fixture
def rules_project(book_project):
    """``rules_project(presets=None) -> Project`` with the ``rules`` chapter."""

    def make(presets: dict[str, str] | None = None) -> Project:
        return Project(book_project(chapters={"rules": RULES_CHAPTER}, presets=presets or {}))

    return make


def _resolve(project: Project, preset: str = "smoke", **overrides) -> dict:
    return resolve_parameters(project, project.chapter("rules"), preset, overrides)


def _override(text: str) -> dict:
    name, value = parse_override(text)
    return {name: value}


# --------------------------------------------------------------------------- YAML 1.2 values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed=010", 10),  # YAML 1.1: octal 8
        ("hidden=[064,64]", [64, 64]),  # YAML 1.1: [52, 64]
        ("epochs=1:20", "1:20"),  # YAML 1.1: sexagesimal 80
        ("seed=0x10", "0x10"),
        ("seed=0o17", "0o17"),
        ("n=1_000", "1_000"),
        ("flag=yes", "yes"),  # YAML 1.1: True
        ("flag=off", "off"),
        ("flag=true", True),
        ("flag=False", False),
        ("day=2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("lr=1e-3", 0.001),
        ("lr=.5", 0.5),
        ("lr=1.", 1.0),
        ("n=-3", -3),
        ("n=+3", 3),
        ("label=~", None),
    ],
)
def test_override_values_are_read_as_yaml_1_2(text, expected):
    _, value = parse_override(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("n=1:20", "'1:20'"), ("n=0x10", "'0x10'"), ("n=1_000", "'1_000'"), ("n=yes", "'yes'")],
)
def test_yaml_1_1_numbers_are_a_type_error_against_an_int(book_project, text, shown):
    project = Project(book_project())
    with pytest.raises(UsageError, match=rf"'n' expects int \(default 3\), got str {shown}"):
        resolve_parameters(project, project.chapter("good"), "smoke", _override(text))


def test_leading_zero_is_decimal_in_a_preset_file(book_project):
    project = Project(book_project(presets={"good.book": "n: 010\nscale: 1e-3\n"}))
    values = resolve_parameters(project, project.chapter("good"), "book")
    assert values["n"] == 10
    assert values["scale"] == 0.001


def test_hex_in_a_preset_file_is_a_type_error_naming_the_file(book_project):
    project = Project(book_project(presets={"good.book": "n: 0x10\n"}))
    with pytest.raises(UsageError, match=r"good\.book\.yaml: parameter 'n' expects int.*'0x10'"):
        resolve_parameters(project, project.chapter("good"), "book")


def test_duplicate_key_in_a_preset_file_names_the_key_and_file(book_project):
    project = Project(book_project(presets={"good.book": "n: 5\nscale: 2\nn: 7\n"}))
    with pytest.raises(
        UsageError, match=r"params/good\.book\.yaml: duplicate key 'n' \(lines 1 and 3\)"
    ):
        resolve_parameters(project, project.chapter("good"), "book")


def test_duplicate_key_in_an_override_value():
    with pytest.raises(UsageError, match=r"value of -p d: duplicate key 'a'"):
        parse_override("d={a: 1, a: 2}")
    with pytest.raises(UsageError, match="duplicate key 'x'"):
        load_yaml("outer:\n  x: 1\n  x: 2\n", "test.yaml")


# --------------------------------------------------------------------------- list item types


def test_list_item_of_the_wrong_type_names_parameter_and_item(rules_project):
    project = rules_project()
    with pytest.raises(
        UsageError,
        match=r"-p override: parameter 'hidden' expects list\[int\] \(default \[8, 8\]\); "
        r"item \[1\] is str 'abc' in \[8, 'abc'\]",
    ):
        _resolve(project, **_override("hidden=[8,abc]"))
    with pytest.raises(UsageError, match=r"item \[0\] is bool True"):
        _resolve(project, hidden=[True, 8])
    with pytest.raises(UsageError, match=r"expects list\[str\].*item \[1\] is int 3"):
        _resolve(project, shapes=["sphere", 3])


def test_list_items_widen_ints_to_floats(rules_project):
    values = _resolve(rules_project(), radii=[1, 2.5])
    assert values["radii"] == [1.0, 2.5]
    assert all(isinstance(r, float) for r in values["radii"])


def test_list_item_of_the_wrong_type_in_a_preset_file(rules_project):
    project = rules_project({"rules.book": "hidden: [64, 64.5]\n"})
    with pytest.raises(
        UsageError, match=r"rules\.book\.yaml: parameter 'hidden'.*item \[1\] is float 64\.5"
    ):
        _resolve(project, "book")


def test_nested_and_untyped_lists():
    source = "grid = [[1, 2], [3]]\nanything = []\nmixed = [1, 'a']\n"
    parameters = parse_parameters_source(source)
    from ntkbook.book.presets import _coerce

    with pytest.raises(UsageError, match=r"list\[list\[int\]\].*item \[1\]\[0\] is str 'x'"):
        _coerce("grid", parameters["grid"].default, [[1], ["x"]], "-p override")
    assert _coerce("anything", [], [1, "a"], "-p override") == [1, "a"]
    assert _coerce("mixed", [1, "a"], ["b", 2.5], "-p override") == ["b", 2.5]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("comment", "bounds", "choices"),
    [
        ("training epochs [>= 1]", [(">=", 1)], None),
        ("step [> 0, <= 1]", [(">", 0), ("<=", 1)], None),
        ("probes [<= n_train]", [("<=", "n_train")], None),
        ("[!= 0]", [("!=", 0)], None),
        ("[>= 1e-6]", [(">=", 1e-6)], None),
        ("activation [in: tanh, relu]", [], ("tanh", "relu")),
        ("[in: 1, 2, 4]", [], (1, 2, 4)),
        ('[in: "a, b", c]', [], ("a, b", "c")),
    ],
)
def test_rule_syntax(comment, bounds, choices):
    rule = parse_rule(comment)
    assert [(b.op, b.operand) for b in rule.bounds] == bounds
    assert rule.choices == choices


@pytest.mark.parametrize("comment", ["", "widths", "see [1]", "list [a, b]", "[1, 2] widths"])
def test_brackets_that_are_prose_are_no_rule(comment):
    assert parse_rule(comment) is None


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        ("[>= ]", r"cannot read '>=' in \[>=\]"),
        ("[>= 1, 2]", r"cannot read '2' in \[>= 1, 2\]"),
        ("[>= 1 2]", r"the bound '1 2' in \[>= 1 2\] must be a number or a parameter name"),
        ("[in: ]", r"must list one or more plain values after 'in:'"),
        ("[in: [1, 2]]", None),  # nested brackets are not a rule: prose
    ],
)
def test_malformed_rules(comment, message):
    if message is None:
        assert parse_rule(comment) is None
        return
    with pytest.raises(UsageError, match=message):
        parse_rule(comment, "cell, line 1: rule of 'x'")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("n = 0  # [>= 1]\n", r"the default of 'n' breaks its own rule \[>= 1\]: 0 is not >= 1"),
        ("a = 'x'  # [in: y, z]\n", r"default of 'a' breaks.*'x' is not one of y, z"),
        ("n = 3  # [<= n_max]\n", r"rule \[<= n_max\] of 'n' names unknown parameter\(s\) n_max"),
        ("a = 'x'  # [>= 1]\n", r"'x' cannot be compared with >= 1"),
        ("d = {'a': 1}  # [>= 1]\n", r"'d' has a rule but a dict value"),
        ("n = 3  # [>= one]\n", r"names unknown parameter\(s\) one"),
    ],
)
def test_bad_rules_are_errors_of_the_parameters_cell(source, message):
    with pytest.raises(UsageError, match=message):
        parse_parameters_source(source, where="rules.ipynb parameters cell")


def test_defaults_that_keep_their_rules_resolve(rules_project):
    values = _resolve(rules_project())
    assert values["epochs"] == 2 and values["activation"] == "tanh"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "epochs=-3",
            r"parameter 'epochs' = -3 \(from -p epochs\) breaks its rule \[>= 1\]: "
            r"-3 is not >= 1",
        ),
        (
            "activation=foo",
            r"parameter 'activation' = 'foo' \(from -p activation\) breaks its rule "
            r"\[in: tanh, relu\]: 'foo' is not one of tanh, relu",
        ),
        ("learning_rate=0", r"'learning_rate' = 0\.0 .*\[> 0, <= 1\]: 0\.0 is not > 0"),
        ("learning_rate=2", r"'learning_rate' = 2\.0 .*2\.0 is not <= 1"),
        ("hidden=[8,0]", r"'hidden' = \[8, 0\] .*item 1 \(0\) is not >= 1"),
        ("shapes=[sphere,cube]", r"item 1 \('cube'\) is not one of sphere, prolate, oblate"),
        (
            "n_train=10",
            r"parameter 'n_probe' = 20 \(from the parameters cell\) breaks its rule "
            r"\[>= 1, <= n_train\]: 20 is not <= n_train \(n_train = 10\)",
        ),
    ],
)
def test_broken_rule_names_parameter_value_rule_and_source(rules_project, override, message):
    with pytest.raises(UsageError, match=message):
        _resolve(rules_project(), **_override(override))


def test_broken_rule_from_a_preset_file_names_the_file(rules_project):
    project = rules_project({"rules.book": "epochs: 0\n"})
    with pytest.raises(
        UsageError, match=r"'epochs' = 0 \(from params/rules\.book\.yaml\) breaks its rule"
    ):
        _resolve(project, "book")
    # an override that repairs it wins
    assert _resolve(project, "book", epochs=4)["epochs"] == 4


def test_cross_parameter_rule_uses_effective_values(rules_project):
    assert _resolve(rules_project(), n_train=10, n_probe=10)["n_probe"] == 10


def test_ntkbook_run_refuses_a_broken_rule_before_the_kernel_starts(book_project, capsys):
    root = book_project(chapters={"rules": RULES_CHAPTER}, presets={})
    code = main(["--root", str(root), "run", "rules", "-p", "epochs=-3"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "error: parameter 'epochs' = -3 (from -p epochs) breaks its rule [>= 1]: -3 is not >= 1"
    ]
    assert not list(Path(root).rglob("kernel_started"))


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("seed=1:20", "'seed' expects int (default 0), got str '1:20'"),
        ("hidden=[8,abc]", "item [1] is str 'abc'"),
        ("activation=foo", "'foo' is not one of tanh, relu"),
    ],
)
def test_ntkbook_run_reports_bad_values_in_one_line(book_project, capsys, param, message):
    root = book_project(chapters={"rules": RULES_CHAPTER}, presets={})
    assert main(["--root", str(root), "run", "rules", "-p", param]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not list(Path(root).rglob("kernel_started"))
