"""Reading policy files: YAML with line numbers, validation, errors naming file, line and field."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import (
    Annotated,
    Any,
    Final,
    Union,
    get_args,
    get_origin,
)

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from .dataset import DatasetPolicy
from .fields import FieldPolicy
from .masking_rules import MASKING_RULES
from .vocabulary import _CUSTOM_ERROR, Loc, PolicyError, Problem, _dotted

# ============================================================================= loading


@dataclass
class _Loaded:
    """The outcome of reading one policy file: the policy, or the problems found."""

    policy: DatasetPolicy | None
    data: Any
    lines: dict[Loc, int]
    problems: list[Problem]


def load_policy(path: Path) -> DatasetPolicy:
    """Read and validate one policy file; raise :class:`PolicyError` listing every problem.

    The file name is not checked against the dataset name here; :func:`load_policies`
    does that for a folder.
    """
    loaded = _load(Path(path))
    if loaded.problems or loaded.policy is None:
        raise PolicyError(loaded.problems)
    return loaded.policy


def load_policies(directory: Path) -> dict[str, DatasetPolicy]:
    """Read and validate every ``*.yaml`` / ``*.yml`` file of ``directory``.

    Returns the policies keyed by dataset name, in file-name order. Raises one
    :class:`PolicyError` listing every problem of every file when any file is malformed,
    when a file's name (without extension) differs from its dataset name, when two files
    define the same dataset, or when the folder holds no policy at all. Hidden files
    (names starting with ``.``) are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError([Problem(str(directory), None, "", "no such policy folder")])
    try:
        files = _policy_files(directory)
    except OSError as err:
        raise PolicyError(
            [Problem(str(directory), None, "", f"cannot list the folder: {err.strerror}")]
        ) from None
    if not files:
        raise PolicyError(
            [Problem(str(directory), None, "", "no policy files (*.yaml, *.yml) in this folder")]
        )
    policies: dict[str, DatasetPolicy] = {}
    defined_in: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in files:
        loaded = _load(path)
        file_problems = list(loaded.problems)
        name = loaded.data.get("dataset") if isinstance(loaded.data, dict) else None
        if isinstance(name, str):
            line = loaded.lines.get(("dataset",))
            if name != path.stem:
                file_problems.append(
                    Problem(
                        str(path),
                        line,
                        "dataset",
                        f"dataset {name!r} does not match the file name {path.name!r}: "
                        f"a policy file is named after its dataset ({name}{path.suffix})",
                    )
                )
            if name in defined_in:
                file_problems.append(
                    Problem(
                        str(path),
                        line,
                        "dataset",
                        f"dataset {name!r} is already defined in {defined_in[name]}",
                    )
                )
            else:
                defined_in[name] = path
        problems.extend(sorted(file_problems, key=lambda p: p.line or 0))
        if not file_problems and loaded.policy is not None:
            policies[loaded.policy.dataset] = loaded.policy
    if problems:
        raise PolicyError(problems)
    return policies


def policy_digest(directory: Path) -> dict[str, str]:
    """SHA-256 (hex) of each policy file's bytes, by file name, for the audit record."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in _policy_files(Path(directory))
    }


def _policy_files(directory: Path) -> list[Path]:
    return sorted(
        (
            path
            for path in directory.iterdir()
            if path.suffix in {".yaml", ".yml"} and not path.name.startswith(".") and path.is_file()
        ),
        key=lambda path: path.name,
    )


def _load(path: Path) -> _Loaded:
    """Read, parse and validate one file, collecting problems instead of raising."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return _Loaded(None, None, {}, [Problem(file, None, "", f"cannot read: {err.strerror}")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return _Loaded(None, None, {}, [Problem(file, line, "", "not UTF-8 text")])

    data, lines, problems = _parse_yaml(file, text)
    if problems and data is None:
        return _Loaded(None, None, lines, problems)
    if data is None:
        problems.append(Problem(file, 1, "", "the file is empty: a policy is a YAML mapping"))
        return _Loaded(None, None, lines, problems)
    if not isinstance(data, dict):
        problems.append(
            Problem(file, lines.get((), 1), "", "a policy must be a YAML mapping at the top level")
        )
        return _Loaded(None, data, lines, problems)
    try:
        policy = DatasetPolicy.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            problems.extend(_error_problems(file, error, data, lines))
        return _Loaded(None, data, lines, problems)
    return _Loaded(policy, data, lines, problems)


# ------------------------------------------------------------------------------ YAML


def _parse_yaml(file: str, text: str) -> tuple[Any, dict[Loc, int], list[Problem]]:
    """Parse ``text`` with YAML's safe subset.

    Returns the data, the 1-based line of every key path (the line of a mapping key, or
    of a sequence item) and the problems found: syntax errors (with the line from the
    parser's mark) and keys repeated within one mapping.
    """
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines, problems
        lines[()] = node.start_mark.line + 1
        _map_lines(loader, node, (), lines, problems, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        problems.append(_yaml_problem(file, err))
        return None, lines, problems
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        problems.append(Problem(file, line, "", f"invalid YAML: {err.reason}"))
        return None, lines, problems
    except yaml.YAMLError as err:
        problems.append(Problem(file, None, "", f"invalid YAML: {err}"))
        return None, lines, problems
    finally:
        loader.dispose()
    return data, lines, problems


def _yaml_problem(file: str, err: yaml.MarkedYAMLError) -> Problem:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark is not None else None
    message = err.problem or "syntax error"
    if err.context:
        context = err.context
        if err.context_mark is not None and err.context_mark is not mark:
            context += f" started at line {err.context_mark.line + 1}"
        message = f"{message} ({context})"
    return Problem(file, line, "", f"invalid YAML: {message}")


_MERGE_TAG: Final[str] = "tag:yaml.org,2002:merge"


def _map_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Loc,
    lines: dict[Loc, int],
    problems: list[Problem],
    file: str,
    visited: set[int],
) -> None:
    """Record the line of every key path below ``node`` and report repeated keys."""
    if id(node) in visited:  # an alias: its content was mapped where it was anchored
        return
    if isinstance(node, yaml.SequenceNode):
        visited.add(id(node))
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _map_lines(loader, item, (*path, index), lines, problems, file, visited)
    elif isinstance(node, yaml.MappingNode):
        visited.add(id(node))
        first_seen: dict[Any, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # construction reports a non-scalar key
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        _dotted((*path, key)),
                        f"duplicate key {key!r} (first at line {first_seen[key]}); "
                        f"YAML would silently keep only the last one",
                    )
                )
            else:
                first_seen[key] = line
            lines[(*path, key)] = line
            _map_lines(loader, value_node, (*path, key), lines, problems, file, visited)
        for source in _merged_mappings(merged):
            for key_node, _ in source.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    key = loader.construct_object(key_node)
                    lines.setdefault((*path, key), key_node.start_mark.line + 1)


def _merged_mappings(nodes: list[yaml.Node]) -> Iterator[yaml.MappingNode]:
    for node in nodes:
        if isinstance(node, yaml.MappingNode):
            yield node
        elif isinstance(node, yaml.SequenceNode):
            yield from (item for item in node.value if isinstance(item, yaml.MappingNode))


# --------------------------------------------------------------- validation errors


def _error_problems(
    file: str, error: Any, data: dict[str, Any], lines: dict[Loc, int]
) -> list[Problem]:
    """Turn one pydantic error into located problems (several for a custom error)."""
    loc: Loc = tuple(error["loc"])
    if error["type"] == _CUSTOM_ERROR:
        items = [((*loc, *sub), message) for sub, message in error["ctx"]["problems"]]
    else:
        items = [(loc, error["msg"])]
    problems = []
    for full_loc, message in items:
        path, parent, is_key = _resolve(full_loc, data)
        message = _explain(error, message, path, parent, is_key, data)
        if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            path = (*path, "rule")
        problems.append(Problem(file, _line(lines, path), _dotted(path), message))
    return problems


def _resolve(loc: Loc, data: Any) -> tuple[Loc, type[BaseModel] | None, bool]:
    """Map a pydantic location onto the YAML data.

    Drops the tags pydantic inserts for a discriminated union (``masking.round.to`` is
    the key ``masking.to`` of the file) and the ``[key]`` marker of a mapping-key error.
    Returns the data path, the model holding the last key (or ``None``), and whether the
    error is about a mapping key rather than its value.
    """
    path: list[str | int] = []
    annotation: Any = DatasetPolicy
    parent: type[BaseModel] | None = None
    node = data
    for item in loc:
        if item == "[key]":
            return tuple(path), parent, True
        annotation = _unwrap(annotation)
        members = _tagged_members(annotation)
        if members is not None:
            if item in members:  # pydantic's tag, not a key of the file
                annotation = members[item]
                continue
            tag = node.get("rule") if isinstance(node, dict) else None
            annotation = members.get(tag) if isinstance(tag, str) else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parent = annotation
            info = annotation.model_fields.get(item) if isinstance(item, str) else None
            annotation = info.annotation if info is not None else None
        elif get_origin(annotation) is dict:
            parent, annotation = None, get_args(annotation)[1]
        elif get_origin(annotation) is tuple:
            parent, annotation = None, get_args(annotation)[0]
        else:
            parent, annotation = None, None
        path.append(item)
        node = _child(node, item)
    return tuple(path), parent, False


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` metadata and ``None`` from an annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType) and NoneType in get_args(annotation):
            rest = tuple(arg for arg in get_args(annotation) if arg is not NoneType)
            annotation = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
        else:
            return annotation


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]] | None:
    """The members of a union discriminated by ``rule``, by tag; ``None`` otherwise."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    members: dict[str, type[BaseModel]] = {}
    for arg in get_args(annotation):
        if not (isinstance(arg, type) and issubclass(arg, BaseModel)):
            return None
        rule = arg.model_fields.get("rule")
        if rule is None:
            return None
        members[get_args(rule.annotation)[0]] = arg
    return members


def _child(node: Any, item: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(item)
    if isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
        return node[item]
    return None


def _line(lines: dict[Loc, int], path: Loc) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _explain(
    error: Any,
    message: str,
    path: Loc,
    parent: type[BaseModel] | None,
    is_key: bool,
    data: Any,
) -> str:
    """Add what pydantic's message leaves out for the commonest mistakes."""
    kind = error["type"]
    if is_key:
        return f"invalid key: {message}"
    if kind == "extra_forbidden" and path:
        key = str(path[-1])
        allowed = [name for name in parent.model_fields] if parent is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"{message}: unknown key {key!r} (did you mean {close[0]!r}?)"
        if allowed:
            return f"{message}: unknown key {key!r} (allowed: {', '.join(allowed)})"
        return f"{message}: unknown key {key!r}"
    if kind == "union_tag_not_found":
        return f"{message}: the key 'rule' is missing (one of {', '.join(MASKING_RULES)})"
    if kind == "model_attributes_type" and path and path[-1] == "masking":
        value = error.get("input")
        example = value if isinstance(value, str) and value in MASKING_RULES else "keep"
        return f"{message}: write the rule as a mapping, e.g. {{rule: {example}}}"
    if kind == "missing" and path and path[-1] == "masking" and parent is FieldPolicy:
        field = data
        for item in path[:-1]:
            field = _child(field, item)
        grade = field.get("grade") if isinstance(field, dict) else None
        if grade == "L3":
            return f"{message}: grade L3 (sensitive) fields must state a masking rule"
    return message
