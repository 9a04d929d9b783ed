"""Chapter parameters: the notebook's ``parameters`` cell, preset files and overrides.

The cell tagged ``parameters`` in a chapter notebook holds one ``name = literal`` per line; its
values are the smoke size (what CI and nbval run). A preset ``params/<chapter>.<preset>.yaml`` maps
some of these names to new values. ``-p name=value`` overrides on the command line come last:

    effective parameters = parameters cell  <-  preset file  <-  overrides

A preset or override may only name parameters that exist in the cell, and a value must have the
type of its default (an ``int`` default accepts only integers, a ``float`` default accepts
integers too, a ``None`` default accepts anything), so a typo fails loudly instead of being
injected into the notebook as an unused variable. The items of a list are checked against the
type of the default's items (``hidden = [64, 64]`` accepts ``[8, 16]``, not ``[8, abc]``).

**Values are read as YAML 1.2** (the core schema), in preset files and in ``-p`` values alike,
not as PyYAML's YAML 1.1: ``010`` is the integer 10 (not octal 8), ``1e-3`` is a float; ``true``
and ``false`` are the only booleans (``yes``, ``no``, ``on``, ``off`` are strings); integers are
decimal only, so ``0x10``, ``0o17``, ``1_000`` and the sexagesimal ``1:20`` are strings, and
therefore a type error against a number default. A key given twice in one mapping (a preset file,
a flow mapping in ``-p``) is an error naming the key, not "the last one wins".

**Rules.** A parameter's comment may end with a rule in square brackets, which ``ntkbook run``
checks for the effective value (after presets and overrides) before the kernel starts:

    epochs = 20  # training epochs [>= 1]
    learning_rate = 0.001  # Adam learning rate [> 0, <= 1]
    n_probe = 100  # probe samples, taken from the training set [>= 1, <= n_train]
    activation = "tanh"  # hidden activation [in: tanh, relu, gelu]
    hidden = [64, 64]  # hidden widths [>= 1]

- ``[OP BOUND, OP BOUND, ...]``: every bound must hold (OP is ``>=``, ``>``, ``<=``, ``<`` or
  ``!=``); a BOUND is a number or the name of another parameter of the cell, whose effective value
  is used.
- ``[in: A, B, ...]``: the value is one of the choices (read as YAML 1.2 scalars, so
  ``[in: 1, 2, 4]`` lists numbers; quote a choice that contains a comma).
- A list value is checked item by item; a ``None`` value is not checked.

Only a trailing ``[...]`` that starts with an operator or ``in:`` is a rule; other brackets are
prose. A rule that does not parse, that names an unknown parameter, or that the default itself
breaks is an error in the parameters cell. The message of a broken rule names the parameter, the
value, the rule and where the value came from.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ntkbook.book.errors import UsageError
from ntkbook.book.project import Chapter, Project

PRESETS = ("smoke", "book", "paper")
PARAMETERS_TAG = "parameters"


@dataclass(frozen=True)
class Bound:
    """One bound of a rule: ``value <op> operand``; ``operand`` is a number or a parameter name."""

    op: str
    operand: float | int | str

    def __str__(self) -> str:
        return f"{self.op} {self.operand}"


@dataclass(frozen=True)
class Rule:
    """The rule of a parameter, from the ``[...]`` at the end of its comment (module docstring).

    Either ``bounds`` (all must hold) or ``choices`` (the value must be one of them) is set.
    """

    text: str
    bounds: tuple[Bound, ...] = ()
    choices: tuple[Any, ...] | None = None

    def references(self) -> list[str]:
        """Names of other parameters that the bounds use."""
        return [b.operand for b in self.bounds if isinstance(b.operand, str)]

    def broken_by(self, value: Any, values: dict[str, Any]) -> str | None:
        """Why ``value`` breaks the rule (``values``: the effective parameters), or None."""
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            label = f"item {index} ({item!r})" if isinstance(value, list) else repr(item)
            if item is None:
                continue
            if self.choices is not None:
                if not any(_same(item, choice) for choice in self.choices):
                    choices = ", ".join(_format_choice(c) for c in self.choices)
                    return f"{label} is not one of {choices}"
                continue
            for bound in self.bounds:
                operand = bound.operand
                detail = ""
                if isinstance(operand, str):
                    operand = values.get(operand)
                    if operand is None:  # the other parameter is unset: nothing to compare
                        continue
                    detail = f" ({bound.operand} = {operand!r})"
                if not _is_number(item) or not _is_number(operand):
                    return f"{label} cannot be compared with {bound}{detail}"
                if not _COMPARE[bound.op](item, operand):
                    return f"{label} is not {bound}{detail}"
        return None


@dataclass(frozen=True)
class Parameter:
    """One entry of a parameters cell: its default value, the line's comment (help text) and the
    rule at the end of that comment, if any."""

    name: str
    default: Any
    comment: str = ""
    rule: Rule | None = None


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "!=": lambda a, b: a != b,
}
_RULE = re.compile(r"\[\s*((?:>=|<=|!=|>|<|in\s*:)[^\[\]]*)\]\s*$")
_BOUND = re.compile(r"\s*(>=|<=|!=|>|<)\s*([^\s=<>!].*?)\s*$")

_INT_12 = re.compile(r"^[-+]?[0-9]+$")
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_KEEP_11 = {"tag:yaml.org,2002:null"}


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"duplicate key {key!r} (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema and no duplicate keys.

    PyYAML follows YAML 1.1: ``010`` is octal 8, ``1:20`` is sexagesimal 80, ``yes`` is a bool,
    ``1e-3`` (no dot) is a *string*, and a repeated key silently overwrites the first. This loader
    resolves plain scalars as YAML 1.2 does (decimal integers, floats, ``true``/``false``, null;
    everything else is a string, dates included) and rejects duplicate keys.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: _Loader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if not _INT_12.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a decimal integer", node.start_mark
        )
    return int(text, 10)


def _construct_float(loader: _Loader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node)
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    try:
        return float(text)
    except ValueError as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a number", node.start_mark
        ) from err


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEEP_11]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_12, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_12, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text`` as YAML 1.2 (see the module docstring); ``where`` names the source.

    Raises:
        UsageError: invalid YAML, or a key given twice in one mapping (naming the key).
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except _DuplicateKey as err:
        lines = (
            f"line {err.first}"
            if err.first == err.second
            else f"lines {err.first} and {err.second}"
        )
        raise UsageError(
            f"{where}: duplicate key {err.key!r} ({lines}); give each key once"
        ) from err
    except yaml.YAMLError as err:
        raise UsageError(f"{where} is not valid YAML: {err}") from err


def parse_parameters_source(source: str, where: str = "parameters cell") -> dict[str, Parameter]:
    """Parse the source of a ``parameters`` cell into ``{name: Parameter}``.

    Only ``name = literal`` (optionally ``name: type = literal``) statements and comments are
    allowed: the cell is read without running it, so every default must be a Python literal.

    Raises:
        UsageError: a syntax error, a statement that is not a simple literal assignment, or a value
            that cannot be stored as JSON (the effective parameters are recorded in provenance).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise UsageError(f"{where}: syntax error on line {err.lineno}: {err.msg}") from err
    comments = _line_comments(source)
    parameters: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value_node = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value_node = node.target, node.value
        else:
            raise UsageError(
                f"{where}, line {node.lineno}: only `name = literal` assignments are allowed, "
                f"got {ast.get_source_segment(source, node)!r}"
            )
        if not isinstance(target, ast.Name):
            raise UsageError(
                f"{where}, line {node.lineno}: the target must be a plain name, got "
                f"{ast.get_source_segment(source, target)!r}"
            )
        try:
            value = ast.literal_eval(value_node)
        except ValueError as err:
            raise UsageError(
                f"{where}, line {node.lineno}: the value of {target.id!r} must be a literal, got "
                f"{ast.get_source_segment(source, value_node)!r}"
            ) from err
        check_json_value(value, f"{where}: {target.id}")
        comment = comments.get(node.end_lineno or node.lineno, "")
        parameters[target.id] = Parameter(
            target.id,
            _normalise(value),
            comment,
            parse_rule(comment, f"{where}, line {node.lineno}: rule of {target.id!r}"),
        )
    _check_rules(parameters, where)
    return parameters


def parse_rule(comment: str, where: str = "rule") -> Rule | None:
    """The rule at the end of a parameter's comment (see the module docstring), or None.

    Raises:
        UsageError: a trailing ``[...]`` that starts like a rule but does not parse.
    """
    match = _RULE.search(comment)
    if match is None:
        return None
    text = match.group(1).strip()
    if text.startswith("in"):
        listed = text.partition(":")[2].strip()
        choices = load_yaml(f"[{listed}]", f"{where} [{text}]")
        if not listed or not all(
            choice is None or isinstance(choice, bool | int | float | str) for choice in choices
        ):
            raise UsageError(f"{where}: [{text}] must list one or more plain values after 'in:'")
        return Rule(text, choices=tuple(choices))
    bounds = []
    for part in text.split(","):
        found = _BOUND.fullmatch(part)
        if found is None:
            raise UsageError(
                f"{where}: cannot read {part.strip()!r} in [{text}]; write bounds such as "
                "[>= 1], [> 0, <= 1] or [<= n_train], or choices such as [in: tanh, relu]"
            )
        op, raw = found.groups()
        operand = raw if raw.isidentifier() else load_yaml(raw, f"{where} [{text}]")
        if not (_is_number(operand) or isinstance(operand, str) and operand.isidentifier()):
            raise UsageError(
                f"{where}: the bound {raw!r} in [{text}] must be a number or a parameter name"
            )
        bounds.append(Bound(op, operand))
    return Rule(text, bounds=tuple(bounds))


def _check_rules(parameters: dict[str, Parameter], where: str) -> None:
    """Every rule names known parameters and holds for the defaults."""
    defaults = {name: parameter.default for name, parameter in parameters.items()}
    for name, parameter in parameters.items():
        if parameter.rule is None:
            continue
        unknown = [ref for ref in parameter.rule.references() if ref not in parameters]
        if unknown:
            raise UsageError(
                f"{where}: the rule [{parameter.rule.text}] of {name!r} names unknown "
                f"parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(parameters)}"
            )
        if isinstance(parameter.default, dict):
            raise UsageError(
                f"{where}: {name!r} has a rule but a dict value; rules check numbers, strings "
                "and lists of them"
            )
        broken = parameter.rule.broken_by(parameter.default, defaults)
        if broken:
            raise UsageError(
                f"{where}: the default of {name!r} breaks its own rule [{parameter.rule.text}]: "
                f"{broken}"
            )


def check_rules(
    parameters: dict[str, Parameter], values: dict[str, Any], sources: dict[str, str]
) -> None:
    """Check the effective ``values`` against the rules of ``parameters``.

    ``sources`` maps a name to where its value came from (``-p override``, a preset file); a
    value that is not in it is the default.

    Raises:
        UsageError: the first broken rule, naming the parameter, the value, the rule and the
            value's source.
    """
    for name, parameter in parameters.items():
        if parameter.rule is None:
            continue
        broken = parameter.rule.broken_by(values[name], values)
        if broken:
            source = sources.get(name, "the parameters cell")
            raise UsageError(
                f"parameter {name!r} = {values[name]!r} (from {source}) breaks its rule "
                f"[{parameter.rule.text}]: {broken}"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, choice: Any) -> bool:
    """Equality in which ``True`` is not ``1`` and ``1`` is ``1.0``."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return value is choice
    return value == choice


def _format_choice(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _line_comments(source: str) -> dict[int, str]:
    """Map line number -> text of the comment on that line."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except tokenize.TokenError:
        pass
    return comments


def check_json_value(value: Any, where: str) -> None:
    """Raise :class:`UsageError` unless ``value`` is finite JSON data (tuples count as lists)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{where}: {value} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_json_value(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"{where}: dict key {key!r} is not a string")
            check_json_value(item, where)
        return
    raise UsageError(f"{where}: {value!r} ({type(value).__name__}) is not a JSON value")


def _normalise(value: Any) -> Any:
    """Tuples become lists, so that a value reads the same from Python, YAML and JSON."""
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    return value


def read_parameters(notebook: Path) -> dict[str, Parameter]:
    """The parameters of a chapter notebook (its cell tagged ``parameters``).

    Raises:
        UsageError: the notebook is not valid JSON, or has no or several cells tagged
            ``parameters``.
    """
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read notebook {notebook}: {err}") from err
    cells = [
        cell
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code"
        and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise UsageError(
            f"{notebook} must have exactly one code cell tagged {PARAMETERS_TAG!r}, "
            f"found {len(cells)}"
        )
    source = cells[0].get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    return parse_parameters_source(source, where=f"{notebook.name} parameters cell")


def available_presets(project: Project, chapter: Chapter) -> list[str]:
    """Presets a chapter can run with: ``smoke`` always, others when their file exists."""
    return [
        preset
        for preset in PRESETS
        if preset == "smoke" or project.preset_file(chapter.name, preset).is_file()
    ]


def load_preset(project: Project, chapter: Chapter, preset: str) -> dict[str, Any]:
    """The values a preset sets (not yet merged with the defaults), validated.

    ``smoke`` is the parameters cell itself, because nbval executes the notebook as committed: a
    ``params/<chapter>.smoke.yaml`` may exist (empty, or repeating defaults) but may not change a
    value, or ``ntkbook run --preset smoke`` and nbval would test different things.

    Raises:
        UsageError: unknown preset name, missing preset file, a file that is not a mapping,
            parameter names that are not in the parameters cell (all of them are named), or a
            smoke file that changes a default.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    path = project.preset_file(chapter.name, preset)
    if not path.is_file():
        if preset == "smoke":
            return {}
        valid = ", ".join(available_presets(project, chapter))
        raise UsageError(
            f"chapter {chapter.name!r} has no preset {preset!r} "
            f"({path.relative_to(project.root)} does not exist); available presets: {valid}"
        )
    where = str(path.relative_to(project.root))
    data = load_yaml(path.read_text(encoding="utf-8"), where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a mapping of parameter names to values")
    defaults = read_parameters(chapter.notebook)
    _check_names(data, defaults, where)
    for name, value in data.items():
        check_json_value(value, f"{where}: {name}")
    values = {name: _coerce(name, defaults[name].default, v, where) for name, v in data.items()}
    if preset == "smoke":
        changed = {name: v for name, v in values.items() if v != defaults[name].default}
        if changed:
            detail = ", ".join(
                f"{name}={v!r} (cell: {defaults[name].default!r})" for name, v in changed.items()
            )
            raise UsageError(
                f"{where} changes {detail}; the smoke preset is the notebook's parameters cell, "
                "so change the cell instead"
            )
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``-p name=value`` override; the value is read as a YAML scalar or flow literal.

    ``epochs=3`` gives an ``int``, ``lr=1e-3`` a ``float``, ``widths=[8,16]`` a list,
    ``name=relu`` a string.

    Raises:
        UsageError: no ``=``, an empty name, or a value that is not valid YAML.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise UsageError(f"override {text!r} must have the form name=value")
    return name, _normalise(load_yaml(raw, f"value of -p {name}"))


def resolve_parameters(
    project: Project,
    chapter: Chapter,
    preset: str,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Effective parameters: the parameters cell, updated by the preset, then by ``overrides``.

    The rules of the parameters cell are checked for the effective values (:func:`check_rules`),
    so that ``ntkbook run`` fails before the kernel starts.

    Raises:
        UsageError: see :func:`load_preset`; an override names an unknown parameter or has the
            wrong type; an effective value breaks its parameter's rule.
    """
    defaults = read_parameters(chapter.notebook)
    values = {name: parameter.default for name, parameter in defaults.items()}
    from_preset = load_preset(project, chapter, preset)
    values.update(from_preset)
    preset_file = project.preset_file(chapter.name, preset)
    sources = {
        name: f"{preset_file.relative_to(project.root)}" if preset_file.is_file() else preset
        for name in from_preset
    }
    if overrides:
        _check_names(overrides, defaults, "-p override")
        for name, value in overrides.items():
            check_json_value(value, f"-p {name}")
            values[name] = _coerce(name, defaults[name].default, value, "-p override")
            sources[name] = f"-p {name}"
    check_rules(defaults, values, sources)
    return values


def _check_names(given: dict[str, Any], defaults: dict[str, Parameter], where: str) -> None:
    unknown = [name for name in given if name not in defaults]
    if unknown:
        valid = ", ".join(defaults) or "none"
        names = ", ".join(repr(name) for name in unknown)
        raise UsageError(f"{where}: unknown parameter(s) {names}; valid parameters: {valid}")


def _coerce(name: str, default: Any, value: Any, where: str) -> Any:
    """Return ``value`` if it fits the type of ``default`` (ints widen to floats), else raise.

    The items of a list are checked against the items of the default list (when those share one
    type), the values of a dict against the default's values under the same keys.
    """
    value = _normalise(value)
    fitted = _fit(default, value)
    if fitted is _MISFIT:
        raise UsageError(
            f"{where}: parameter {name!r} expects {_type_name(default)} "
            f"(default {default!r}), got {type(value).__name__} {value!r}"
        )
    if isinstance(fitted, _ItemMisfit):
        raise UsageError(
            f"{where}: parameter {name!r} expects {_type_name(default)} "
            f"(default {default!r}); item {fitted.where} is {type(fitted.item).__name__} "
            f"{fitted.item!r} in {value!r}"
        )
    return fitted


_MISFIT = object()


@dataclass(frozen=True)
class _ItemMisfit:
    where: str
    item: Any


def _item_template(default: list) -> Any:
    """One value that stands for every item of ``default``, or ``None`` (items are not checked).

    Integers and floats mixed stand for floats; otherwise the items must share one type.
    """
    if not default or any(item is None for item in default):
        return None
    if all(_is_number(item) for item in default):
        return 0.0 if any(isinstance(item, float) for item in default) else 0
    kinds = {type(item) for item in default}
    if len(kinds) != 1:
        return None
    if isinstance(default[0], list):
        templates = [_item_template(item) for item in default]
        if all(isinstance(t, type(templates[0])) and t == templates[0] for t in templates):
            return default[0]
        return []
    return default[0]


def _type_name(default: Any) -> str:
    if isinstance(default, list):
        template = _item_template(default)
        if template is None:
            return "list"
        return f"list[{_type_name(template)}]"
    return type(default).__name__


def _fit(default: Any, value: Any) -> Any:
    """``value`` shaped like ``default`` (ints widened to floats), ``_MISFIT`` or an
    :class:`_ItemMisfit` naming the first bad item."""
    if default is None:
        return value
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _MISFIT
    if isinstance(default, int):
        return value if _is_number(value) and isinstance(value, int) else _MISFIT
    if isinstance(default, float):
        return float(value) if _is_number(value) else _MISFIT
    if isinstance(default, list):
        if not isinstance(value, list):
            return _MISFIT
        template = _item_template(default)
        if template is None:
            return value
        fitted = []
        for index, item in enumerate(value):
            result = _fit(template, item)
            if result is _MISFIT:
                return _ItemMisfit(f"[{index}]", item)
            if isinstance(result, _ItemMisfit):
                return _ItemMisfit(f"[{index}]{result.where}", result.item)
            fitted.append(result)
        return fitted
    if isinstance(default, dict):
        if not isinstance(value, dict):
            return _MISFIT
        fitted_dict = {}
        for key, item in value.items():
            result = _fit(default[key], item) if key in default else item
            if result is _MISFIT:
                return _ItemMisfit(f"[{key!r}]", item)
            if isinstance(result, _ItemMisfit):
                return _ItemMisfit(f"[{key!r}]{result.where}", result.item)
            fitted_dict[key] = result
        return fitted_dict
    return value if isinstance(value, type(default)) else _MISFIT
