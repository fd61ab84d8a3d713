"""The CloudFlow FDL (``Type: StateMachine``) compiler: fields of every state type, Retry and
Catch, constructors and expressions, as in ``fdl-reference.md`` section 1."""

from __future__ import annotations

import math
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
    MAX_BACKOFF_RATE,
    MAX_MAP_CONCURRENCY,
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_INTERVAL,
    MAX_WAIT_SECONDS,
    ROOT,
    Compiler,
    _Built,
    _fields,
    _hint,
    _number_text,
    _Path,
    _PendingScope,
    _shown,
    _type_name,
)

MAX_TIMEOUT_SECONDS = 604_800  # 7 days: CloudFlow's documented cap for Task Timeout
MAX_PARALLEL_BRANCHES = 50

_CF_TOP = _fields("Type Name SpecVersion StartAt States Description")
_CF_COMMON = "Name Type Description"
_CF_FLOW = "Next End"
_CF_ALL_CONS = "InputConstructor OutputConstructor GlobalConstructor"
_CF_ERRORS = "Retry Catch"
_CF_DISTRIBUTED = (
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "MaxItems",
    "ToleratedFailedCount",
    "ToleratedFailedPercentage",
)
_CF_FIELDS: dict[str, set[str]] = {
    "Task": _fields(
        _CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS,
        "Action TaskMode Parameters Timeout HeartbeatSeconds",
    ),
    "Pass": _fields(_CF_COMMON, _CF_FLOW, _CF_ALL_CONS),
    "Wait": _fields(
        _CF_COMMON, _CF_FLOW, _CF_ALL_CONS, "Seconds Seconds.$ Timestamp Timestamp.$",
    ),
    "Choice": _fields(_CF_COMMON, "InputConstructor GlobalConstructor Branches Default"),
    "Parallel": _fields(_CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS, "Branches"),
    "Map": _fields(
        _CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS, *_CF_DISTRIBUTED,
        "ItemsPath Processor ItemProcessor MaxConcurrency MaxConcuccency ItemConstructor "
        "ProcessorConfig",
    ),
    "Succeed": _fields(_CF_COMMON, "End", _CF_ALL_CONS),
    "Fail": _fields(_CF_COMMON, "End Code Detail", _CF_ALL_CONS),
}  # fmt: skip
_CF_ANY_FIELD = set().union(*_CF_FIELDS.values())
_CF_TYPES_WITH: dict[str, list[str]] = {
    name: [t for t, fields in _CF_FIELDS.items() if name in fields] for name in _CF_ANY_FIELD
}
_CF_RETRY_FIELDS = _fields(
    "Errors Description MaxAttempts IntervalSeconds BackoffRate MaxBackoffSeconds"
)
_CF_CATCH_FIELDS = {"Errors", "Description", "Next", "OutputConstructor"}
# Each may also be given as an expression (``resourceArn.$``), evaluated at run time.
_CF_PARAMETERS = _fields("resourceArn resourceArn.$ invocationType invocationType.$ body body.$")
_TASK_MODES = {mode.value: mode for mode in TaskMode}


class CloudFlowCompiler(Compiler):
    def build(self, doc: dict) -> FlowGraph:
        return self.cloudflow(doc)

    def count_states(self, doc: dict) -> int:
        count = 0
        scopes = [doc]  # objects with a States list: the top level, branches, processors
        while scopes:
            states = scopes.pop().get("States")
            for state in states if isinstance(states, list) else ():
                if not isinstance(state, dict):
                    continue
                count += 1
                branches = state.get("Branches")  # Parallel (a Choice's have no States)
                for branch in branches if isinstance(branches, list) else ():
                    if isinstance(branch, dict):
                        scopes.append(branch)
                for key in ("Processor", "ItemProcessor"):
                    if isinstance(state.get(key), dict):
                        scopes.append(state[key])
        return count

    def cloudflow(self, doc: dict) -> FlowGraph:
        self.check_fields(doc, _CF_TOP, ROOT, what="the top level")
        version = self.get(doc, "SpecVersion", ROOT, "string")
        if "SpecVersion" not in doc:
            self.warn(ROOT / "SpecVersion", "SpecVersion is missing; assuming v1")
        elif version is not None and version != "v1":
            self.error(ROOT / "SpecVersion", f"SpecVersion must be 'v1', got {_shown(version)}")
        name = self.get(doc, "Name", ROOT, "string")
        description = self.get(doc, "Description", ROOT, "string")
        root = self.cf_scope(doc, ROOT, "States")
        return FlowGraph(
            dialect="cloudflow",
            root=root,
            name=name,
            description=description,
            scopes=self.scopes,
            functions=frozenset(self.functions),
            queues=frozenset(self.queues),
        )

    def cf_scope(self, obj: dict, obj_path: _Path, scope_id: str) -> Scope:
        """A ``{StartAt, States}`` object: the top level, a Parallel branch, a Map processor."""
        start = self.get(obj, "StartAt", obj_path, "string", required=True)
        list_path = obj_path / "States"
        if isinstance(obj.get("States"), dict):
            self.error(
                list_path,
                "States must be an array of states, each with its Name "
                "(not a mapping from names to states as in ASL)",
            )
            items = None
        else:
            items = self.get(obj, "States", obj_path, "array", required=True)
        if items == []:
            self.error(list_path, "States must not be empty")
        built: dict[str, _Built] = {}
        for i, item in enumerate(items or []):
            one = self.cf_state(item, list_path[i])
            if one is None:
                continue
            name = one.state.name
            if name in built:
                self.error(
                    list_path[i] / "Name",
                    f"duplicate state name '{name}' (first at {built[name].path.text})",
                )
                continue
            built[name] = one
        self.pending.append(_PendingScope(scope_id, list_path, start, obj_path / "StartAt", built))
        scope = Scope(
            path=scope_id, start_at=start or "", states={n: b.state for n, b in built.items()}
        )
        self.scopes[scope_id] = scope
        return scope

    def cf_state(self, item: Any, path: _Path) -> _Built | None:
        if not isinstance(item, dict):
            self.error(path, f"a state must be an object, got {_type_name(item)}")
            return None
        name = self.get(item, "Name", path, "string", required=True)
        if name == "":
            self.error(path / "Name", "Name must not be empty")
        type_ = self.get(item, "Type", path, "string", required=True)
        compile_state = self._CF_STATES.get(type_) if type_ is not None else None
        if type_ is not None and compile_state is None:
            self.error(path / "Type", f"unknown state type '{type_}'{_hint(type_, _CF_FIELDS)}")
        if compile_state is None:
            return None
        self.state_count += 1
        built = compile_state(self, item, path, name or "")
        return built if name else None  # a nameless state was checked but can't be named

    def cf_common(self, item: dict, path: _Path, name: str, kind: StateKind) -> tuple[dict, _Built]:
        """Fields shared by every state: checks the field set, Description, constructors,
        Next/End, Retry and Catch. Returns the ``State`` keyword arguments and a ``_Built``
        whose ``state`` the caller fills in."""
        allowed = _CF_FIELDS[kind.value]
        what = f"a {kind.value} state"
        for key in item:
            if key in allowed:
                continue
            if key in ("Retry", "Catch"):
                self.error(
                    path / key,
                    f"{key} is not allowed on {what}; only Task, Parallel and Map "
                    "states have Retry and Catch",
                )
            elif key in ("Next", "End") and kind is StateKind.CHOICE:
                self.error(
                    path / key,
                    f"a Choice state has no {key}; its Branches and Default say where to go",
                )
            elif key == "Next" and kind in (StateKind.SUCCEED, StateKind.FAIL):
                self.error(path / key, f"a {kind.value} state ends its scope and has no Next")
            elif key in _CF_ANY_FIELD:
                owners = ", ".join(_CF_TYPES_WITH[key])
                self.error(path / key, f"{key} is not allowed on {what} (only on {owners})")
            else:
                self.error(path / key, f"unknown field '{key}'{self.hint(key, allowed)}")
        self.get(item, "Description", path, "string")
        kwargs: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "path": path.text,
            "line": self.lines.get(path.keys),
        }
        for key, attr in (
            ("InputConstructor", "input_constructor"),
            ("OutputConstructor", "output_constructor"),
            ("GlobalConstructor", "global_constructor"),
        ):
            if key in item and key in allowed:
                kwargs[attr] = self.cf_constructor(item[key], path / key)
        built = _Built(state=None, path=path)  # type: ignore[arg-type]
        end = self.get(item, "End", path, "boolean") if "End" in allowed else None
        if kind in (StateKind.SUCCEED, StateKind.FAIL):
            built.terminal = True
        elif kind is not StateKind.CHOICE:
            next_ = self.get(item, "Next", path, "string")
            has_next = "Next" in item
            if has_next and end:
                self.error(path / "End", "a state cannot have both Next and End: true")
            elif not has_next and not end and "End" not in item:
                self.error(path / "Next", "Next is required (or End: true to end the scope)")
            elif not has_next and end is False:
                self.error(path / "End", "End: false needs a Next")
            if next_ is not None and not end:
                kwargs["next"] = next_
                built.edges.append((next_, path / "Next"))
            else:
                # End: true, or a Next/End already reported as wrong: either way, don't pile
                # "unreachable"/"can never end" on top of it.
                built.terminal = True
        if "Retry" in item and "Retry" in allowed:
            kwargs["retry"] = self.cf_retry(item["Retry"], path / "Retry")
        if "Catch" in item and "Catch" in allowed:
            kwargs["catch"] = self.cf_catch(item["Catch"], path / "Catch", built)
        return kwargs, built

    def cf_constructor(self, value: Any, path: _Path) -> Any:
        if not isinstance(value, dict):
            self.error(path, f"{path.keys[-1]} must be an object, got {_type_name(value)}")
            return None
        return self.template(value, path)

    def cf_retry(self, value: Any, path: _Path) -> tuple[RetryRule, ...]:
        if not isinstance(value, list):
            self.error(path, f"Retry must be an array of rules, got {_type_name(value)}")
            return ()
        rules = []
        catch_all_at: int | None = None
        for i, rule in enumerate(value):
            p = path[i]
            if not isinstance(rule, dict):
                self.error(p, f"a Retry rule must be an object, got {_type_name(rule)}")
                continue
            self.check_fields(rule, _CF_RETRY_FIELDS, p, what="a Retry rule")
            self.get(rule, "Description", p, "string")
            errors = self.strings(rule, "Errors", p)
            if catch_all_at is not None:
                self.warn(
                    p,
                    f"this rule is never used: Retry[{catch_all_at}] (FnF.ALL) "
                    "matches every error first",
                )
            if "FnF.ALL" in errors and catch_all_at is None:
                catch_all_at = i
            attempts = self.number(
                rule,
                "MaxAttempts",
                p,
                integer=True,
                required=True,
                maximum=MAX_RETRY_ATTEMPTS,
                default=0,
            )
            interval = self.number(
                rule, "IntervalSeconds", p, required=True, maximum=MAX_RETRY_INTERVAL, default=0
            )
            rate = self.number(
                rule, "BackoffRate", p, minimum=1, maximum=MAX_BACKOFF_RATE, default=1.0
            )
            cap = self.number(rule, "MaxBackoffSeconds", p, maximum=MAX_RETRY_INTERVAL)
            rules.append(
                RetryRule(
                    errors=errors,
                    max_attempts=attempts,
                    interval_seconds=float(interval),
                    backoff_rate=float(rate),
                    max_backoff_seconds=None if cap is None else float(cap),
                    path=p.text,
                )
            )
        return tuple(rules)

    def cf_catch(self, value: Any, path: _Path, built: _Built) -> tuple[CatchRule, ...]:
        if not isinstance(value, list):
            self.error(path, f"Catch must be an array of rules, got {_type_name(value)}")
            return ()
        rules = []
        for i, rule in enumerate(value):
            p = path[i]
            if not isinstance(rule, dict):
                self.error(p, f"a Catch rule must be an object, got {_type_name(rule)}")
                continue
            self.check_fields(rule, _CF_CATCH_FIELDS, p, what="a Catch rule")
            self.get(rule, "Description", p, "string")
            errors = self.strings(rule, "Errors", p)
            next_ = self.get(rule, "Next", p, "string", required=True)
            output = None
            if "OutputConstructor" in rule:
                output = self.cf_constructor(rule["OutputConstructor"], p / "OutputConstructor")
            if next_ is not None:
                built.edges.append((next_, p / "Next"))
            rules.append(
                CatchRule(errors=errors, next=next_ or "", output_constructor=output, path=p.text)
            )
        return tuple(rules)

    # ---- CloudFlow state types

    def cf_task(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.TASK)
        action = self.get(item, "Action", path, "string", required=True)
        if action is not None and action != "FC:InvokeFunction":
            self.error(
                path / "Action",
                f"Action '{action}' is not supported; flowsite supports FC:InvokeFunction",
            )
        mode_text = self.get(item, "TaskMode", path, "string", default="RequestComplete")
        mode = _TASK_MODES.get(mode_text)
        if mode is None:
            self.error(
                path / "TaskMode",
                f"TaskMode must be one of {', '.join(_TASK_MODES)}, "
                f"got {_shown(mode_text)}{_hint(mode_text, _TASK_MODES)}",
            )
            mode = TaskMode.REQUEST
        timeout = self.cf_timeout(item, path)
        heartbeat = self.number(
            item, "HeartbeatSeconds", path, exclusive_minimum=True, maximum=MAX_TIMEOUT_SECONDS
        )
        if "HeartbeatSeconds" in item and mode is not TaskMode.CUSTOM_CALLBACK:
            self.error(
                path / "HeartbeatSeconds", "HeartbeatSeconds needs TaskMode: WaitForCustomCallback"
            )
            heartbeat = None
        arn, function, invocation, body = "", None, "sync", None
        arn_expr = invocation_expr = None
        params_path = path / "Parameters"
        params = self.get(item, "Parameters", path, "object", required=True)
        if params is not None:
            self.check_fields(params, _CF_PARAMETERS, params_path, what="FC:InvokeFunction")
            for key in ("resourceArn", "invocationType", "body"):
                if key in params and f"{key}.$" in params:
                    self.error(params_path / f"{key}.$", f"use either {key} or {key}.$, not both")
            if "resourceArn.$" in params:
                # The function is known only at run time (no "does not exist yet" warning).
                arn_expr = self.expression(
                    params["resourceArn.$"], params_path / "resourceArn.$", what="resourceArn.$"
                )
            elif "resourceArn" not in params:
                self.error(params_path / "resourceArn", "resourceArn is required")
            else:
                arn = self.get(params, "resourceArn", params_path, "string") or ""
            if arn:
                function = self.function_target(arn, params_path / "resourceArn")
                if function is None:
                    self.error(
                        params_path / "resourceArn",
                        f"resourceArn {_shown(arn)} is not a Function Compute function ARN "
                        "(acs:fc:{region}:{account}:functions/{name} or "
                        "acs:fc:::services/{service}/functions/{name})",
                    )
            if "invocationType.$" in params:
                invocation_expr = self.expression(
                    params["invocationType.$"],
                    params_path / "invocationType.$",
                    what="invocationType.$",
                )
            invocation_text = self.get(
                params, "invocationType", params_path, "string", default="Sync"
            )
            if invocation_text not in ("Sync", "Async"):
                self.error(
                    params_path / "invocationType",
                    f"invocationType must be Sync or Async, got {_shown(invocation_text)}",
                )
            invocation = "async" if invocation_text == "Async" else "sync"
            if "body" in params and "body.$" in params:
                pass  # reported above
            elif "body" in params:
                body = self.template(params["body"], params_path / "body")
            elif "body.$" in params:
                # an expression for the whole body: the template {"$": expr}, whose errors
                # then read "...Parameters.body.$", just where the user wrote it
                body = self.template({"$": params["body.$"]}, params_path.key("body.$", "body"))
        task = TaskSpec(
            target="function",
            resource=arn,
            function=function,
            mode=mode,
            invocation=invocation,
            body=body,
            timeout_seconds=timeout,
            heartbeat_seconds=None if heartbeat is None else float(heartbeat),
            resource_expr=arn_expr,
            invocation_expr=invocation_expr,
        )
        return self._finish(kwargs, built, task=task)

    def cf_timeout(self, item: dict, path: _Path) -> float | None:
        if "Timeout" not in item:
            return None
        value = item["Timeout"]
        seconds: float | None = None
        if isinstance(value, str):
            try:
                seconds = float(value.strip())
            except ValueError:
                seconds = None
            if seconds is None or not math.isfinite(seconds):
                self.error(
                    path / "Timeout", f"Timeout must be a number of seconds, got {_shown(value)}"
                )
                return None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value  # compared before float(): a huge integer must not overflow
            if isinstance(value, float) and not math.isfinite(value):
                self.error(path / "Timeout", f"Timeout must be a finite number, got {value}")
                return None
        else:
            self.error(
                path / "Timeout", f"Timeout must be a number of seconds, got {_type_name(value)}"
            )
            return None
        if not 0 <= seconds <= MAX_TIMEOUT_SECONDS:
            self.error(
                path / "Timeout",
                f"Timeout must be between 0 and {MAX_TIMEOUT_SECONDS} "
                f"seconds, got {_number_text(seconds)}",
            )
            return None
        return float(seconds) or None

    def cf_pass(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.PASS)
        return self._finish(kwargs, built)

    def cf_wait(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.WAIT)
        given = [k for k in ("Seconds", "Seconds.$", "Timestamp", "Timestamp.$") if k in item]
        if len(given) != 1:
            where = path / given[1] if len(given) > 1 else path
            self.error(
                where,
                "a Wait state needs exactly one of Seconds, Seconds.$, Timestamp "
                f"and Timestamp.$, got {len(given)}",
            )
        spec: dict[str, Any] = {}
        if "Seconds" in item:
            value = item["Seconds"]
            if isinstance(value, str) and value.startswith("$"):
                self.error(
                    path / "Seconds", "Seconds must be a number; write Seconds.$ for an expression"
                )
            else:
                spec["seconds"] = self.number(item, "Seconds", path, maximum=MAX_WAIT_SECONDS)
                if spec["seconds"] is not None:
                    spec["seconds"] = float(spec["seconds"])
        if "Seconds.$" in item:
            spec["seconds_expr"] = self.expression(item["Seconds.$"], path / "Seconds.$")
        if "Timestamp" in item:
            value = self.get(item, "Timestamp", path, "string")
            if value is not None:
                if value.startswith("$"):
                    self.error(
                        path / "Timestamp",
                        "Timestamp must be an RFC 3339 date-time; "
                        "write Timestamp.$ for an expression",
                    )
                else:
                    spec["timestamp"] = self.timestamp(value, path / "Timestamp", "Timestamp")
        if "Timestamp.$" in item:
            spec["timestamp_expr"] = self.expression(item["Timestamp.$"], path / "Timestamp.$")
        return self._finish(kwargs, built, wait=WaitSpec(**spec))

    def cf_choice(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.CHOICE)
        branches = []
        items = self.get(item, "Branches", path, "array", required=True)
        if items == []:
            self.error(path / "Branches", "Branches must not be empty")
        for i, branch in enumerate(items or []):
            p = (path / "Branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a Choice branch must be an object, got {_type_name(branch)}")
                continue
            self.check_fields(
                branch, {"Condition", "Next", "Description"}, p, what="a Choice branch"
            )
            self.get(branch, "Description", p, "string")
            condition = None
            if "Condition" not in branch:
                self.error(p / "Condition", "Condition is required")
            else:
                condition = self.expression(branch["Condition"], p / "Condition")
            next_ = self.get(branch, "Next", p, "string", required=True)
            if next_ is not None:
                built.edges.append((next_, p / "Next"))
            branches.append(
                ChoiceBranch(condition=condition, target=ChoiceTarget(next=next_), path=p.text)
            )
        default = self.get(item, "Default", path, "string", required=True)
        if default is not None:
            built.edges.append((default, path / "Default"))
        return self._finish(
            kwargs, built, choices=tuple(branches), default=ChoiceTarget(next=default)
        )

    def cf_parallel(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.PARALLEL)
        scopes = []
        items = self.get(item, "Branches", path, "array", required=True)
        if items == []:
            self.error(path / "Branches", "Branches must not be empty")
        elif items is not None and len(items) > MAX_PARALLEL_BRANCHES:
            self.error(
                path / "Branches",
                f"a Parallel state has at most {MAX_PARALLEL_BRANCHES} branches, got {len(items)}",
            )
        for i, branch in enumerate(items or []):
            p = (path / "Branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a Parallel branch must be an object, got {_type_name(branch)}")
                continue
            self.check_fields(
                branch, {"StartAt", "States", "Description"}, p, what="a Parallel branch"
            )
            self.get(branch, "Description", p, "string")
            scopes.append(self.cf_scope(branch, p, p.text))
        return self._finish(kwargs, built, branches=tuple(scopes))

    def cf_map(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.MAP)
        for key in _CF_DISTRIBUTED:
            if key in item:
                self.error(path / key, f"{key} is not supported yet (distributed Map)")
        config = self.get(item, "ProcessorConfig", path, "object")
        if config is not None:
            config_path = path / "ProcessorConfig"
            self.check_fields(config, {"ExecutionMode"}, config_path, what="ProcessorConfig")
            mode = self.get(config, "ExecutionMode", config_path, "string")
            if mode is not None and mode.lower() != "inline":
                self.error(
                    config_path / "ExecutionMode",
                    f"distributed Map is not supported yet (ExecutionMode {_shown(mode)})",
                )
        items = None
        if "ItemsPath" not in item:
            self.error(path / "ItemsPath", "ItemsPath is required")
        else:
            items = self.expression(item["ItemsPath"], path / "ItemsPath")
        concurrency = 0
        if "MaxConcurrency" in item and "MaxConcuccency" in item:
            self.error(
                path / "MaxConcuccency", "use either MaxConcurrency or MaxConcuccency, not both"
            )
        else:
            key = "MaxConcuccency" if "MaxConcuccency" in item else "MaxConcurrency"
            concurrency = self.number(
                item, key, path, integer=True, maximum=MAX_MAP_CONCURRENCY, default=0
            )
        item_constructor = None
        if "ItemConstructor" in item:
            item_constructor = self.cf_constructor(
                item["ItemConstructor"], path / "ItemConstructor"
            )
        processor = None
        if "Processor" in item and "ItemProcessor" in item:
            self.error(path / "ItemProcessor", "use either Processor or ItemProcessor, not both")
        # the older spelling ItemProcessor is accepted; the scope is "...Processor" either way
        spelled = (
            "ItemProcessor" if "ItemProcessor" in item and "Processor" not in item else "Processor"
        )
        body = self.get(item, spelled, path, "object", required=True)
        if body is not None:
            p = path.key(spelled, "Processor")
            self.check_fields(body, {"StartAt", "States", "Description"}, p, what=spelled)
            self.get(body, "Description", p, "string")
            processor = self.cf_scope(body, p, p.text)
        spec = MapSpec(
            items=items,
            processor=processor,
            max_concurrency=concurrency,
            item_constructor=item_constructor,
        )
        return self._finish(kwargs, built, map=spec)

    def cf_succeed(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.SUCCEED)
        return self._finish(kwargs, built)

    def cf_fail(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.FAIL)
        code = self.get(item, "Code", path, "string")
        detail = self.get(item, "Detail", path, "string")
        if "Detail" not in item:
            self.warn(path, f"Fail state '{name}' has no Detail")
        return self._finish(kwargs, built, fail=FailSpec(code=code, detail=detail))

    _CF_STATES: dict[str, Callable[[CloudFlowCompiler, dict, _Path, str], _Built]] = {
        "Task": cf_task,
        "Pass": cf_pass,
        "Wait": cf_wait,
        "Choice": cf_choice,
        "Parallel": cf_parallel,
        "Map": cf_map,
        "Succeed": cf_succeed,
        "Fail": cf_fail,
    }
