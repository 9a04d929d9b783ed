"""Chapter parameters: the notebook's ``parameters`` cell, preset files and overrides.

The cell tagged ``parameters`` in a chapter notebook holds one ``name = literal`` per line; its
values are the smoke size (what CI and nbval run). A preset ``params/<chapter>.<preset>.yaml`` maps
some of these names to new values. ``-p name=value`` overrides on the command line come last:

    effective parameters = parameters cell  <-  preset file  <-  overrides

A preset or override may only name parameters that exist in the cell, and a value must have the
type of its default (an ``int`` default accepts only integers, a ``float`` default accepts
integers too, a ``None`` default accepts anything), so a typo fails loudly instead of being
injected into the notebook as an unused variable.
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
class Parameter:
    """One entry of a parameters cell: its default value and the line's comment (help text)."""

    name: str
    default: Any
    comment: str = ""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats.

    PyYAML follows YAML 1.1, which reads ``1e-3`` (no dot) as the *string* "1e-3". Learning rates
    are written exactly like that, so this loader also resolves exponent floats without a dot.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text`` with :class:`_Loader`; ``where`` names the source in errors."""
    try:
        return yaml.load(text, Loader=_Loader)
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
        parameters[target.id] = Parameter(
            target.id, _normalise(value), comments.get(node.end_lineno or node.lineno, "")
        )
    return parameters


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

    Raises:
        UsageError: see :func:`load_preset`; an override names an unknown parameter or has the
            wrong type.
    """
    defaults = read_parameters(chapter.notebook)
    values = {name: parameter.default for name, parameter in defaults.items()}
    values.update(load_preset(project, chapter, preset))
    if overrides:
        _check_names(overrides, defaults, "-p override")
        for name, value in overrides.items():
            check_json_value(value, f"-p {name}")
            values[name] = _coerce(name, defaults[name].default, value, "-p override")
    return values


def _check_names(given: dict[str, Any], defaults: dict[str, Parameter], where: str) -> None:
    unknown = [name for name in given if name not in defaults]
    if unknown:
        valid = ", ".join(defaults) or "none"
        names = ", ".join(repr(name) for name in unknown)
        raise UsageError(f"{where}: unknown parameter(s) {names}; valid parameters: {valid}")


def _coerce(name: str, default: Any, value: Any, where: str) -> Any:
    """Return ``value`` if it fits the type of ``default`` (ints widen to floats), else raise."""
    value = _normalise(value)
    if default is None:
        return value
    ok: bool
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise UsageError(
            f"{where}: parameter {name!r} expects {type(default).__name__} "
            f"(default {default!r}), got {type(value).__name__} {value!r}"
        )
    return value
