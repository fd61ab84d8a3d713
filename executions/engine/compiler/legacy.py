"""The legacy FnF FDL (``version: v1``, ``type: flow``) compiler: steps in list order,
``goto``/``end``, mappings, retry/catch, as in ``fdl-reference.md`` section 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..graph import (
    CatchRule,
    ChoiceBranch,
    ChoiceTarget,
    FailSpec,
    FlowGraph,
    MapSpec,
    RetryRule,
    Scope,
    StateKind,
    TaskMode,
    TaskSpec,
    WaitSpec,
)
from .common import (
    _MNS_QUEUE_ARN,
    MAX_BACKOFF_RATE,
    MAX_MAP_CONCURRENCY,
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_INTERVAL,
    MAX_WAIT_SECONDS,
    ROOT,
    Compiler,
    _Built,
    _hint,
    _Path,
    _PendingScope,
    _shown,
    _type_name,
)

MAX_LEGACY_TIMEOUT_SECONDS = 31_536_000  # legacy timeoutSeconds: at most an execution's year
MAX_LEGACY_BRANCHES = 100

_LG_TOP = {"version", "type", "name", "description", "steps", "inputMappings", "outputMappings"}
_LG_COMMON = {"type", "name", "description", "end", "inputMappings", "outputMappings"}
_LG_ERRORS = {"retry", "catch", "errorMappings"}
_LG_FIELDS: dict[str, set[str]] = {
    "task": _LG_COMMON | _LG_ERRORS | {"resourceArn", "pattern", "timeoutSeconds", "serviceParams"},
    "pass": _LG_COMMON,
    "wait": _LG_COMMON | {"duration", "timestamp"},
    "choice": _LG_COMMON | {"choices", "default"},
    "parallel": _LG_COMMON | _LG_ERRORS | {"branches"},
    "foreach": _LG_COMMON | _LG_ERRORS | {"iterationMapping", "steps", "maxConcurrency"},
    "succeed": _LG_COMMON,
    "fail": _LG_COMMON | {"error", "cause"},
}
_LG_ANY_FIELD = set().union(*_LG_FIELDS.values())
_LG_TYPES_WITH: dict[str, list[str]] = {
    name: [t for t, fields in _LG_FIELDS.items() if name in fields] for name in _LG_ANY_FIELD
}
_LG_KINDS = {
    "task": StateKind.TASK,
    "pass": StateKind.PASS,
    "wait": StateKind.WAIT,
    "choice": StateKind.CHOICE,
    "parallel": StateKind.PARALLEL,
    "foreach": StateKind.MAP,
    "succeed": StateKind.SUCCEED,
    "fail": StateKind.FAIL,
}
_LG_PATTERNS = {
    "requestResponse": TaskMode.REQUEST,
    "sync": TaskMode.SYSTEM_CALLBACK,
    "waitForCallback": TaskMode.CUSTOM_CALLBACK,
}


class LegacyCompiler(Compiler):
    noun = "step"

    def build(self, doc: dict) -> FlowGraph:
        return self.legacy(doc)

    def count_states(self, doc: dict) -> int:
        count = 0
        scopes = [doc]  # objects with a steps list: the flow, branches, choices, a foreach
        while scopes:
            steps = scopes.pop().get("steps")
            for step in steps if isinstance(steps, list) else ():
                if not isinstance(step, dict):
                    continue
                count += 1
                if "steps" in step:  # a foreach's own steps
                    scopes.append(step)
                for key in ("branches", "choices"):
                    children = step.get(key)
                    for child in children if isinstance(children, list) else ():
                        if isinstance(child, dict):
                            scopes.append(child)
                if isinstance(step.get("default"), dict):
                    scopes.append(step["default"])
        return count

    def legacy(self, doc: dict) -> FlowGraph:
        self.check_fields(doc, _LG_TOP, ROOT, what="a legacy flow")
        name = self.get(doc, "name", ROOT, "string")
        description = self.get(doc, "description", ROOT, "string")
        input_mappings = self.mappings(doc, "inputMappings", ROOT)
        output_mappings = self.mappings(doc, "outputMappings", ROOT)
        root = self.lg_scope(doc, ROOT, "steps")
        return FlowGraph(
            dialect="legacy",
            root=root,
            name=name,
            description=description,
            input_mappings=input_mappings,
            output_mappings=output_mappings,
            scopes=self.scopes,
            functions=frozenset(self.functions),
            queues=frozenset(self.queues),
        )

    def lg_scope(self, obj: dict, obj_path: _Path, scope_id: str) -> Scope:
        """The ``steps`` list of ``obj``: the flow, a parallel branch, a foreach, a choice
        branch. Steps run in list order; the first one is the start."""
        items = self.get(obj, "steps", obj_path, "array", required=True)
        list_path = obj_path / "steps"
        if items == []:
            self.error(list_path, "steps must not be empty")
        items = items or []
        names = [s.get("name") if isinstance(s, dict) else None for s in items]
        built: dict[str, _Built] = {}
        for i, item in enumerate(items):
            following = names[i + 1] if i + 1 < len(items) else None
            following = following if isinstance(following, str) and following else None
            one = self.lg_step(item, list_path[i], following, last=i + 1 == len(items))
            if one is None:
                continue
            name = one.state.name
            if name in built:
                self.error(
                    list_path[i] / "name",
                    f"duplicate step name '{name}' (first at {built[name].path.text})",
                )
                continue
            built[name] = one
        start = names[0] if names and isinstance(names[0], str) and names[0] else None
        self.pending.append(_PendingScope(scope_id, list_path, start, None, built))
        scope = Scope(
            path=scope_id, start_at=start or "", states={n: b.state for n, b in built.items()}
        )
        self.scopes[scope_id] = scope
        return scope

    def lg_step(
        self, item: Any, path: _Path, following: str | None, *, last: bool
    ) -> _Built | None:
        if not isinstance(item, dict):
            self.error(path, f"a step must be an object, got {_type_name(item)}")
            return None
        name = self.get(item, "name", path, "string", required=True)
        if name == "":
            self.error(path / "name", "name must not be empty")
        type_ = self.get(item, "type", path, "string", required=True)
        compile_step = self._LG_STEPS.get(type_) if type_ is not None else None
        if type_ is not None and compile_step is None:
            self.error(path / "type", f"unknown step type '{type_}'{_hint(type_, _LG_FIELDS)}")
        if compile_step is None:
            return None
        self.state_count += 1
        built = compile_step(self, item, path, name or "", following, last)
        return built if name else None  # a nameless step was checked but can't be named

    def lg_common(
        self, item: dict, path: _Path, name: str, type_: str, following: str | None, last: bool
    ) -> tuple[dict, _Built]:
        """Fields every step has: the field set, ``end`` and the implicit next, mappings,
        retry/catch/errorMappings where allowed."""
        self.check_fields(
            item,
            _LG_FIELDS[type_],
            path,
            what=f"a {type_} step",
            elsewhere=_LG_TYPES_WITH,
            plural=lambda t: f"{t} steps",
        )
        self.get(item, "description", path, "string")
        kwargs: dict[str, Any] = {
            "name": name,
            "kind": _LG_KINDS[type_],
            "path": path.text,
            "line": self.lines.get(path.keys),
        }
        built = _Built(state=None, path=path)  # type: ignore[arg-type]
        end = self.get(item, "end", path, "boolean")
        if end and last:
            self.warn(path / "end", "end: true on the last step is redundant")
        if type_ in ("succeed", "fail") or end or following is None:
            built.terminal = True
        else:
            kwargs["next"] = following
            if type_ != "choice":  # a choice takes its own next only in some cases: lg_choice
                built.edges.append((following, path))
        kwargs["input_mappings"] = self.mappings(item, "inputMappings", path)
        kwargs["output_mappings"] = self.mappings(item, "outputMappings", path)
        if "errorMappings" in _LG_FIELDS[type_]:
            kwargs["error_mappings"] = self.mappings(item, "errorMappings", path)
            kwargs["retry"] = self.lg_retry(item, path)
            kwargs["catch"] = self.lg_catch(item, path, built)
            if "errorMappings" in item and not item.get("catch"):
                self.warn(path / "errorMappings", "errorMappings has no effect without catch")
        return kwargs, built

    def lg_retry(self, item: dict, path: _Path) -> tuple[RetryRule, ...]:
        rules = []
        fields = {"errors", "intervalSeconds", "maxIntervalSeconds", "maxAttempts", "multiplier"}
        for i, rule in enumerate(self.get(item, "retry", path, "array") or []):
            p = (path / "retry")[i]
            if not isinstance(rule, dict):
                self.error(p, f"a retry rule must be an object, got {_type_name(rule)}")
                continue
            self.check_fields(rule, fields, p, what="a retry rule")
            errors = self.strings(rule, "errors", p)
            interval = self.number(
                rule, "intervalSeconds", p, maximum=MAX_RETRY_INTERVAL, default=1
            )
            cap = self.number(
                rule,
                "maxIntervalSeconds",
                p,
                maximum=MAX_RETRY_INTERVAL,
                exclusive_minimum=True,
                default=MAX_RETRY_INTERVAL,
            )
            attempts = self.number(
                rule, "maxAttempts", p, integer=True, maximum=MAX_RETRY_ATTEMPTS, default=3
            )
            multiplier = self.number(
                rule, "multiplier", p, minimum=1, maximum=MAX_BACKOFF_RATE, default=2
            )
            rules.append(
                RetryRule(
                    errors=errors,
                    max_attempts=attempts,
                    interval_seconds=float(interval),
                    backoff_rate=float(multiplier),
                    max_backoff_seconds=float(cap),
                    path=p.text,
                )
            )
        return tuple(rules)

    def lg_catch(self, item: dict, path: _Path, built: _Built) -> tuple[CatchRule, ...]:
        rules = []
        for i, rule in enumerate(self.get(item, "catch", path, "array") or []):
            p = (path / "catch")[i]
            if not isinstance(rule, dict):
                self.error(p, f"a catch rule must be an object, got {_type_name(rule)}")
                continue
            self.check_fields(rule, {"errors", "goto"}, p, what="a catch rule")
            errors = self.strings(rule, "errors", p)
            goto = self.get(rule, "goto", p, "string", required=True)
            if goto is not None:
                built.edges.append((goto, p / "goto"))
            rules.append(CatchRule(errors=errors, next=goto or "", path=p.text))
        return tuple(rules)

    # ---- legacy step types

    def lg_task(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "task", following, last)
        arn = self.get(item, "resourceArn", path, "string", required=True) or ""
        target, function, queue = "function", None, None
        if arn:
            function = self.function_target(arn, path / "resourceArn")
            queue_match = _MNS_QUEUE_ARN.fullmatch(arn)
            if queue_match:
                target, queue = "queue", queue_match.group("q")
                self.queues.add(queue)
            elif function is None:
                self.error(
                    path / "resourceArn",
                    f"resourceArn {_shown(arn)} is not supported; flowsite supports Function "
                    "Compute functions (acs:fc:{region}:{account}:services/{service}/"
                    "functions/{name}) and MNS queues "
                    "(acs:mns:{region}:{account}:/queues/{name}/messages)",
                )
        pattern = self.get(item, "pattern", path, "string", default="requestResponse")
        mode = _LG_PATTERNS.get(pattern)
        if mode is None:
            self.error(
                path / "pattern",
                f"pattern must be one of {', '.join(_LG_PATTERNS)}, "
                f"got {_shown(pattern)}{_hint(pattern, _LG_PATTERNS)}",
            )
            mode = TaskMode.REQUEST
        timeout = self.number(item, "timeoutSeconds", path, maximum=MAX_LEGACY_TIMEOUT_SECONDS)
        params = None
        if "serviceParams" in item:
            value = self.get(item, "serviceParams", path, "object")
            if value is not None:
                params = self.template(value, path / "serviceParams", dialect="legacy")
        task = TaskSpec(
            target=target,
            resource=arn,
            function=function,
            queue=queue,
            mode=mode,
            # ``sync`` submits an asynchronous job and waits for its end; the other two call
            # the function and wait for its response (a callback step then waits on).
            invocation="async" if mode is TaskMode.SYSTEM_CALLBACK else "sync",
            service_params=params,
            timeout_seconds=float(timeout) if timeout else None,
        )
        return self._finish(kwargs, built, task=task)

    def lg_pass(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "pass", following, last)
        return self._finish(kwargs, built)

    def lg_wait(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "wait", following, last)
        given = [k for k in ("duration", "timestamp") if k in item]
        if len(given) != 1:
            self.error(
                path / given[1] if given else path,
                "a wait step needs exactly one of duration and timestamp",
            )
        spec: dict[str, Any] = {}
        if "duration" in item:
            value = item["duration"]
            if isinstance(value, str) and value.startswith("$"):
                spec["seconds_expr"] = self.expression(value, path / "duration", dialect="legacy")
            elif isinstance(value, str):
                self.error(
                    path / "duration",
                    f"duration must be a number of seconds or a $ expression, got {_shown(value)}",
                )
            else:
                seconds = self.number(item, "duration", path, maximum=MAX_WAIT_SECONDS)
                spec["seconds"] = None if seconds is None else float(seconds)
        if "timestamp" in item:
            value = self.get(item, "timestamp", path, "string")
            if value is not None and value.startswith("$"):
                spec["timestamp_expr"] = self.expression(
                    value, path / "timestamp", dialect="legacy"
                )
            elif value is not None:
                spec["timestamp"] = self.timestamp(value, path / "timestamp", "timestamp")
        return self._finish(kwargs, built, wait=WaitSpec(**spec))

    def lg_choice(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "choice", following, last)
        # Where the step's own ``next`` is taken (inline steps finished, or nothing matched).
        falls_through = "default" not in item
        branches = []
        items = self.get(item, "choices", path, "array", required=True)
        if items == []:
            self.error(path / "choices", "choices must not be empty")
        for i, branch in enumerate(items or []):
            p = (path / "choices")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a choice must be an object, got {_type_name(branch)}")
                continue
            self.check_fields(branch, {"condition", "steps", "goto"}, p, what="a choice")
            condition = None
            if "condition" not in branch:
                self.error(p / "condition", "condition is required")
            else:
                condition = self.expression(branch["condition"], p / "condition", dialect="legacy")
            target = self.lg_choice_target(branch, p, built, "a choice")
            falls_through |= target.scope is not None
            branches.append(ChoiceBranch(condition=condition, target=target, path=p.text))
        default = None
        if "default" in item:
            value = self.get(item, "default", path, "object")
            if value is not None:
                self.check_fields(value, {"steps", "goto"}, path / "default", what="default")
                default = self.lg_choice_target(value, path / "default", built, "default")
                falls_through |= default.scope is not None
        if falls_through and "next" in kwargs:
            built.edges.append((kwargs["next"], path))
        built.terminal = falls_through and "next" not in kwargs
        return self._finish(kwargs, built, choices=tuple(branches), default=default)

    def lg_choice_target(self, obj: dict, path: _Path, built: _Built, what: str) -> ChoiceTarget:
        if "steps" in obj and "goto" in obj:
            self.error(path / "goto", f"{what} has either steps or goto, not both")
        elif "steps" not in obj and "goto" not in obj:
            self.error(path, f"{what} needs steps or goto")
        if "steps" in obj:
            return ChoiceTarget(scope=self.lg_scope(obj, path, path.text))
        goto = self.get(obj, "goto", path, "string")
        if goto is not None:
            built.edges.append((goto, path / "goto"))
        return ChoiceTarget(next=goto)

    def lg_parallel(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "parallel", following, last)
        scopes = []
        items = self.get(item, "branches", path, "array", required=True)
        if items == []:
            self.error(path / "branches", "branches must not be empty")
        elif items is not None and len(items) > MAX_LEGACY_BRANCHES:
            self.error(
                path / "branches",
                f"a parallel step has at most {MAX_LEGACY_BRANCHES} branches, got {len(items)}",
            )
        for i, branch in enumerate(items or []):
            p = (path / "branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a branch must be an object, got {_type_name(branch)}")
                continue
            self.check_fields(branch, {"steps"}, p, what="a branch")
            scopes.append(self.lg_scope(branch, p, p.text))
        return self._finish(kwargs, built, branches=tuple(scopes))

    def lg_foreach(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "foreach", following, last)
        mapping = self.get(item, "iterationMapping", path, "object", required=True)
        collection, item_key, index_key = None, "item", None
        if mapping is not None:
            p = path / "iterationMapping"
            self.check_fields(mapping, {"collection", "item", "index"}, p, what="iterationMapping")
            if "collection" not in mapping:
                self.error(p / "collection", "collection is required")
            else:
                collection = self.expression(
                    mapping["collection"], p / "collection", dialect="legacy"
                )
            item_key = self.get(mapping, "item", p, "string", default="item")
            index_key = self.get(mapping, "index", p, "string")
            for key, value in (("item", item_key), ("index", index_key)):
                if value == "":
                    self.error(p / key, f"{key} must not be empty")
            if index_key is not None and index_key == item_key:
                self.error(p / "index", "index and item must name different keys")
        concurrency = self.number(
            item, "maxConcurrency", path, integer=True, maximum=MAX_MAP_CONCURRENCY, default=0
        )
        processor = self.lg_scope(item, path, f"{path.text}.steps")
        spec = MapSpec(
            items=collection,
            processor=processor,
            max_concurrency=concurrency,
            item_key=item_key or "item",
            index_key=index_key,
        )
        return self._finish(kwargs, built, map=spec)

    def lg_succeed(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "succeed", following, last)
        return self._finish(kwargs, built)

    def lg_fail(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "fail", following, last)
        error = self.get(item, "error", path, "string")
        cause = self.get(item, "cause", path, "string")
        return self._finish(kwargs, built, fail=FailSpec(code=error, detail=cause))

    _LG_STEPS: dict[str, Callable[..., _Built]] = {
        "task": lg_task,
        "pass": lg_pass,
        "wait": lg_wait,
        "choice": lg_choice,
        "parallel": lg_parallel,
        "foreach": lg_foreach,
        "succeed": lg_succeed,
        "fail": lg_fail,
    }
