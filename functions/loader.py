"""Where a handler's code may come from, and how a worker loads it.

A handler is written ``module.function`` (``package.module.function`` for a module inside a
package) and names a plain Python function defined in a ``.py`` file inside one of the
``FLOWSITE_FUNCTIONS_PATH`` folders. Nothing else can be reached: not the standard library, not
installed packages, not flowsite itself.

* :func:`locate` maps the dotted name to a file, folder by folder in order, exactly as
  :func:`load` does, and checks the real path (after symlinks) of that file, of every folder on
  the way and of every package ``__init__.py`` that loading runs. It never imports (importing
  runs code) and never searches ``sys.path``: ``os.system`` finds no ``os.py`` and is refused,
  and a ``json.py`` in a functions folder makes ``json.loads`` mean that file, never the
  standard library's. Services call it when a function is saved; :func:`load` calls it again
  before every run, so a row saved under older rules (or a file that has since become a
  symlink to elsewhere) fails with ``FC.InvalidHandler`` instead of running.
* :func:`load` (workers only) executes the file under a private module name, once per process so
  that module-level state persists between calls (as in a Function Compute instance), and
  accepts the attribute only when it is a plain function whose code lives in a functions
  folder: not a class, a module, a builtin, an async function, or a function the module merely
  imported from elsewhere (``from os import system``).

The dotted name: ASCII letters, digits and ``_`` (so no look-alike letters), parts that start
with a letter (no private names, no dunders such as ``__import__``, ``__builtins__`` or
``__init__``), no Python keywords, at most 255 characters.

A folder that holds, or lies inside, the Python standard library, installed packages or
flowsite's own code is never searched (``checks.py`` reports it), so a careless
``FLOWSITE_FUNCTIONS_PATH=.`` or ``=/`` cannot expose them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.util
import inspect
import keyword
import linecache
import os
import re
import sys
import sysconfig
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from flowsite.errors import ServiceError

from .process import refuse_in_web_process

MAX_HANDLER_LENGTH = 255
MAX_FRAMES = 20
# The admin's static check reads a module's source; bigger files are not parsed in a request.
MAX_SOURCE_BYTES = 1 << 20

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_ROOT_PREFIX = "flowsite_functions_"


class InvalidHandler(ServiceError):
    """A handler path that does not name a function in a functions folder (400)."""

    code = "InvalidHandler"
    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"handler: {reason}",
            errors=[{"path": "handler", "line": None, "message": reason}],
        )
        self.reason = reason


@dataclass(frozen=True)
class Location:
    """Where a handler lives. Paths are real paths (symlinks resolved)."""

    handler: str
    folder: str  # the functions folder it was found in
    module: str  # dotted module name inside that folder
    attribute: str
    file: str  # the module's file: ``a/b.py`` or ``a/b/__init__.py``
    is_package: bool

    @property
    def relative_file(self) -> str:
        return os.path.relpath(self.file, self.folder)


# --- folders ------------------------------------------------------------------------------------


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@functools.cache
def _protected() -> tuple[tuple[str, str], ...]:
    paths = sysconfig.get_paths()
    base = settings.BASE_DIR
    candidates = [
        (paths["stdlib"], "the Python standard library"),
        (paths["platstdlib"], "the Python standard library"),
        (paths["purelib"], "installed Python packages"),
        (paths["platlib"], "installed Python packages"),
        *((str(base / app), "flowsite's own code") for app in ("flowsite", "executions")),
        (os.path.dirname(os.path.abspath(__file__)), "flowsite's own code"),
    ]
    return tuple((os.path.realpath(path), what) for path, what in candidates if path)


def unsafe_folder_reason(folder: str) -> str | None:
    """Why ``folder`` (a real path) must not be a functions folder, or None when it may."""
    for path, what in _protected():
        if _inside(path, folder) or _inside(folder, path):
            return f"it overlaps {what} ({path})"
    return None


@functools.lru_cache(maxsize=64)
def _real_folder(entry: str) -> str | None:
    # Cached per process, like the loaded modules: re-pointing a symlinked functions folder
    # takes a worker restart, as changing a handler's code does.
    real = os.path.realpath(entry)
    return None if unsafe_folder_reason(real) else real


def folders() -> list[str]:
    """The functions folders that exist, as real paths, in ``FLOWSITE_FUNCTIONS_PATH`` order,
    without the unsafe ones (see :func:`unsafe_folder_reason`)."""
    result: list[str] = []
    for entry in settings.FLOWSITE_FUNCTIONS_PATH:
        real = _real_folder(entry)
        if real is not None and real not in result and os.path.isdir(real):
            result.append(real)
    return result


# --- the dotted name and its file (no import) -------------------------------------------------


def split_handler(handler: Any) -> tuple[list[str], str]:
    """``"pkg.mod.fn"`` -> ``(["pkg", "mod"], "fn")``; :class:`InvalidHandler` if malformed."""
    if not isinstance(handler, str) or not handler:
        raise InvalidHandler("a dotted path such as module.function is required")
    if len(handler) > MAX_HANDLER_LENGTH:
        raise InvalidHandler(f"longer than {MAX_HANDLER_LENGTH} characters")
    parts = handler.split(".")
    if len(parts) < 2:
        raise InvalidHandler(
            "a dotted path such as module.function (a module file in a functions folder, "
            "then a function defined in it)"
        )
    for part in parts:
        if part.startswith("_"):
            raise InvalidHandler(
                f"{part!r}: names starting with _ (private names, dunders) cannot be used"
            )
        if not _NAME.fullmatch(part):
            raise InvalidHandler(
                f"{part!r} is not a name: ASCII letters, digits and _, starting with a letter"
            )
        if keyword.iskeyword(part):
            raise InvalidHandler(f"{part!r} is a Python keyword")
    return parts[:-1], parts[-1]


def _module_file(folder: str, parts: list[str]) -> tuple[str, bool] | None:
    """The file that module ``parts`` maps to in ``folder`` (a package's ``__init__.py`` wins
    over a same-named ``.py``, as in Python's own import system), or None."""
    *packages, last = parts
    base = os.path.join(folder, *packages)
    init = os.path.join(base, last, "__init__.py")
    if os.path.isfile(init):
        return init, True
    module = os.path.join(base, last + ".py")
    if os.path.isfile(module):
        return module, False
    return None


def _check_real_paths(folder: str, parts: list[str], file: str, handler: str) -> str:
    """The real path of ``file``, after checking that it, every folder on the way to it and
    every package ``__init__.py`` that loading it runs stay inside ``folder``."""
    directory = folder
    for part in parts[:-1]:
        directory = os.path.join(directory, part)
        if not _inside(os.path.realpath(directory), folder):
            raise InvalidHandler(
                f"{os.path.relpath(directory, folder)}/ leads outside the functions folders "
                "(a symbolic link)"
            )
        init = os.path.join(directory, "__init__.py")
        if os.path.isfile(init) and not _inside(os.path.realpath(init), folder):
            raise InvalidHandler(
                f"{os.path.relpath(init, folder)} is outside the functions folders "
                "(a symbolic link)"
            )
    real = os.path.realpath(file)
    if not _inside(real, folder):
        raise InvalidHandler(
            f"{os.path.relpath(file, folder)} is outside the functions folders "
            f"(a symbolic link), so {handler} cannot be used"
        )
    return real


def locate(handler: Any) -> Location:
    """Where ``handler`` lives, without importing anything; :class:`InvalidHandler` when it is
    malformed or names no module file inside a functions folder. The first folder that has the
    module decides (a bad file there is refused, not skipped)."""
    parts, attribute = split_handler(handler)
    return _locate(handler, parts, attribute)


def _locate(handler: str, parts: list[str], attribute: str) -> Location:
    roots = folders()
    if not roots:
        raise InvalidHandler("no functions folder exists (FLOWSITE_FUNCTIONS_PATH)")
    for folder in roots:
        try:
            found = _module_file(folder, parts)
        except (OSError, ValueError):
            found = None
        if found is None:
            continue
        file, is_package = found
        real = _check_real_paths(folder, parts, file, handler)
        return Location(handler, folder, ".".join(parts), attribute, real, is_package)
    rel = "/".join(parts)
    raise InvalidHandler(
        f"no module {'.'.join(parts)} in the functions folders "
        f"(looked for {rel}.py and {rel}/__init__.py)"
    )


# --- loading (workers only) ---------------------------------------------------------------------

_lock = threading.RLock()
_loaded: dict[tuple[str, str], types.ModuleType] = {}
_checked: dict[tuple[str, str, str], Any] = {}


def _package(name: str, directory: str) -> types.ModuleType:
    """A module that only holds a search location, like a namespace package."""
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [directory]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module


def _execute(name: str, file: str, package_dir: str | None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, file, submodule_search_locations=[package_dir] if package_dir else None
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise InvalidHandler(f"{file} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as importlib does: dataclasses, pickle and the module's own
    # relative imports look themselves up in sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _root_name(folder: str) -> str:
    return _ROOT_PREFIX + hashlib.sha256(folder.encode()).hexdigest()[:12]


def _load_module(location: Location) -> types.ModuleType:
    key = (location.folder, location.module)
    with _lock:
        module = _loaded.get(key)
        if module is None:
            # Handlers import their helper modules by plain name (the demo handlers share
            # flowsite_demo_events); only a process that runs handlers gets the folders on
            # sys.path, after the standard library, so they cannot shadow it.
            if location.folder not in sys.path:
                sys.path.append(location.folder)
            name = _root_name(location.folder)
            parent = sys.modules.get(name) or _package(name, location.folder)
            parts = location.module.split(".")
            for depth, part in enumerate(parts, start=1):
                name = f"{name}.{part}"
                module = sys.modules.get(name)
                if module is None:
                    directory = os.path.realpath(os.path.join(location.folder, *parts[:depth]))
                    if depth == len(parts):
                        package_dir = directory if location.is_package else None
                        module = _execute(name, location.file, package_dir)
                    elif os.path.isfile(init := os.path.join(directory, "__init__.py")):
                        module = _execute(name, os.path.realpath(init), directory)
                    else:
                        module = _package(name, directory)
                    setattr(parent, part, module)
                parent = module
            _loaded[key] = module
    loaded_from = getattr(module, "__file__", None) or ""
    if loaded_from != location.file and os.path.realpath(loaded_from) != location.file:
        # e.g. the handler's own relative import loaded a compiled extension of that name, or
        # the file was replaced by a package since this process loaded it.
        raise InvalidHandler(f"module {location.module} was loaded from another file")
    return module


def load_module(module: str) -> types.ModuleType:
    """The module object that workers run for handlers in ``module`` (tests read module-level
    state through it). Runs the module's code on first use: never in a web process."""
    refuse_in_web_process()
    parts = module.split(".")
    split_handler(f"{module}.module")  # the same rules for the module's dotted name
    return _load_module(_locate(module, parts, ""))


def load(handler: str) -> Callable[..., Any]:
    """The handler function, loaded from its file in a functions folder; :class:`InvalidHandler`
    when the path or the attribute is not acceptable. Exceptions raised by the module's own
    code while it loads propagate (the caller reports them as the handler's load error)."""
    refuse_in_web_process()
    location = locate(handler)
    module = _load_module(location)
    try:
        value = getattr(module, location.attribute)
    except AttributeError:
        raise InvalidHandler(
            f"module {location.module} has no function {location.attribute}"
        ) from None
    # The same object as last time passed the checks then (they cost more than the call).
    key = (location.folder, location.module, location.attribute)
    if _checked.get(key) is not value:
        _check_function(value, handler)
        _checked[key] = value
    return value


def _check_function(value: Any, handler: str) -> Callable[..., Any]:
    if isinstance(value, types.ModuleType):
        raise InvalidHandler(f"{handler} is a module, not a function")
    if isinstance(value, type):
        raise InvalidHandler(f"{handler} is a class, not a function")
    if not callable(value):
        raise InvalidHandler(f"{handler} is not a function")
    try:
        target = inspect.unwrap(value)  # through decorators that keep __wrapped__
    except ValueError:
        target = value
    if not isinstance(target, types.FunctionType):
        raise InvalidHandler(
            f"{handler} is not a Python function (builtins, partials and callable objects "
            "cannot be handlers)"
        )
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(value):
        raise InvalidHandler(f"{handler} is an async function; handlers are plain functions")
    defined_in = os.path.realpath(target.__code__.co_filename)
    if not any(_inside(defined_in, folder) for folder in folders()):
        raise InvalidHandler(
            f"{handler} is defined outside the functions folders (imported from elsewhere)"
        )
    return value


# --- what the admin may check without running code ------------------------------------------


def defines_statically(location: Location) -> bool:
    """Whether the module's source binds ``location.attribute`` at top level (``def``,
    assignment or import), judged from its syntax tree: nothing is executed. A name made
    dynamically (``globals()[...]``, ``__getattr__``) is not seen."""
    if os.path.getsize(location.file) > MAX_SOURCE_BYTES:
        return True  # too big to parse in a request: the worker's load will tell
    with open(location.file, "rb") as source:
        tree = ast.parse(source.read(), filename=location.relative_file)
    return _binds(tree.body, location.attribute)


def _binds(statements: list[ast.stmt], name: str) -> bool:
    """Whether module-level ``statements`` bind ``name`` (descending into if/try/with/for
    blocks, which run at import, but not into function or class bodies)."""
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name:
                    return True
            continue
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
            targets = [node.target]
        elif isinstance(node, ast.With | ast.AsyncWith):
            targets = [item.optional_vars for item in node.items if item.optional_vars]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id == name:
                    return True
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and _binds(block, name):
                return True
        for handler in getattr(node, "handlers", None) or ():
            if _binds(handler.body, name):
                return True
    return False


# --- a handler's error, as its author may see it -------------------------------------------------


def _strip_folders(text: str, roots: list[str]) -> str:
    for folder in roots:
        text = text.replace(folder.rstrip(os.sep) + os.sep, "")
    return text


def handler_error(exc: BaseException) -> str:
    """The error's message, then its traceback reduced to the frames in files inside the
    functions folders (paths relative to their folder): never flowsite's or the standard
    library's frames, nor paths outside the functions folders."""
    roots = folders()
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = f"<{type(exc).__name__} with an unprintable message>"
    message = _strip_folders(message, roots)
    frames: list[traceback.FrameSummary] = []
    real_paths: dict[str, str] = {}
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        real = real_paths.setdefault(filename, os.path.realpath(filename))
        folder = next((f for f in roots if _inside(real, f)), None)
        if folder is None:
            continue
        line = linecache.getline(real, lineno or 0).strip()
        frames.append(
            traceback.FrameSummary(
                os.path.relpath(real, folder),
                lineno,
                frame.f_code.co_name,
                lookup_line=False,
                line=line,
            )
        )
    if not frames:
        return message
    # As Python prints it: the frames (each line ends with a newline), then "Type: message".
    listed = "".join(traceback.StackSummary.from_list(frames[-MAX_FRAMES:]).format())
    return f"{message}\nTraceback (most recent call last):\n{listed}{type(exc).__name__}: {message}"
