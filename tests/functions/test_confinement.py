"""Handlers are confined to functions defined in files inside FLOWSITE_FUNCTIONS_PATH folders.

Every hostile handler path is refused with 400 ``InvalidHandler`` when saved, and a row that
holds one anyway (saved before the rules, or written to the database directly) fails with
``FC.InvalidHandler`` when a worker would run it. "Nothing runs" is proven with canaries:
modules outside the functions folders that write a marker file when they are imported or
called, and payloads that would write a marker (or delete a folder) if they were executed.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from flowsite.access import SYSTEM
from functions import loader, services
from functions.models import Function

pytestmark = pytest.mark.django_db

ISSUE_HANDLERS = [
    "cProfile.run",
    "os.system",
    "subprocess.getoutput",
    "builtins.exec",
    "shutil.rmtree",
    "pickle.loads",
]


@pytest.fixture
def place(tmp_path, settings):
    """``fns`` is the only functions folder; ``outside`` holds the canaries. ``marker`` exists
    only if a canary (or a payload) ran."""
    fns, outside = tmp_path / "fns", tmp_path / "outside"
    fns.mkdir()
    outside.mkdir()
    marker = tmp_path / "marker"
    canary = f"""\
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")


        def run(event, context):
            pathlib.Path({str(marker)!r}).write_text("called")
            return "ran"
        """
    (outside / "canary.py").write_text(textwrap.dedent(canary))
    (outside / "__init__.py").write_text(textwrap.dedent(canary))
    (fns / "real.py").write_text("def handler(event, context):\n    return 'real'\n")
    settings.FLOWSITE_FUNCTIONS_PATH = [str(fns)]

    class Place:
        pass

    here = Place()
    here.fns, here.outside, here.marker, here.tmp = fns, outside, marker, tmp_path
    return here


def test_the_canary_would_tell(place):
    # The control: running the canary's code does leave the marker.
    import importlib.util

    spec = importlib.util.spec_from_file_location("canary_control", place.outside / "canary.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert place.marker.read_text() == "imported"


def refused(handler: str) -> loader.InvalidHandler:
    with pytest.raises(loader.InvalidHandler) as caught:
        services.function_create(name="f", handler=handler, actor=SYSTEM)
    assert caught.value.status == 400 and caught.value.code == "InvalidHandler"
    assert caught.value.errors[0]["path"] == "handler"
    assert not Function.objects.filter(name="f").exists()
    return caught.value


def run_saved_row(handler: str, payload: bytes = b"{}", name: str = "row"):
    """A row that skipped the service's check, run as a worker would run it."""
    function = Function.objects.create(name=name, handler=handler, timeout_seconds=5)
    return services.invoke(function, payload)


# --- the handlers named in the issue --------------------------------------------------------------


@pytest.mark.parametrize("handler", ISSUE_HANDLERS)
def test_the_issues_handlers_are_refused_over_the_api(staff_client, handler):
    response = staff_client.post(
        "/api/v1/functions/", {"name": "pwn", "handler": handler}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidHandler"
    module = handler.split(".")[0]
    assert body["message"] == (
        f"handler: no module {module} in the functions folders "
        f"(looked for {module}.py and {module}/__init__.py)"
    )
    assert not Function.objects.filter(name="pwn").exists()


@pytest.mark.parametrize("handler", ISSUE_HANDLERS)
def test_a_saved_row_with_the_issues_handlers_never_runs(place, handler):
    victim = place.tmp / "victim"
    victim.mkdir()
    # What each would do if it ran: write the marker (cProfile.run, builtins.exec execute the
    # event as code), run a shell command, or delete a folder (shutil.rmtree).
    payloads = {
        "cProfile.run": f"open({str(place.marker)!r}, 'w').write('x')",
        "builtins.exec": f"open({str(place.marker)!r}, 'w').write('x')",
        "os.system": f"touch {place.marker}",
        "subprocess.getoutput": f"touch {place.marker}",
        "shutil.rmtree": str(victim),
        "pickle.loads": "",
    }
    result = run_saved_row(handler, payloads[handler].encode())
    assert not result.ok
    assert result.error == "FC.InvalidHandler"
    assert result.cause.startswith(f"cannot load {handler}: no module")
    assert not place.marker.exists()
    assert victim.is_dir()


# --- paths that try to leave the folder -----------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        "..",
        "../canary.run",
        "..canary.run",
        "outside.canary.run",
        "fns/../outside/canary.run",
        "/etc/passwd",
        f"{os.sep}tmp.canary.run",
        "a..b",
        ".real.handler",
        "real.handler.",
        "real handler.x",
        "real-handler.x",
        "real.handler\n",
        "real.hand\x00ler",
        "real",
        "",
    ],
)
def test_paths_that_leave_the_folder_or_are_no_dotted_name(place, handler):
    refused(handler)
    assert not place.marker.exists()


def test_a_module_on_sys_path_but_outside_the_folders_is_refused(place, monkeypatch):
    monkeypatch.syspath_prepend(str(place.outside))
    error = refused("canary.run")
    assert "no module canary in the functions folders" in error.message
    result = run_saved_row("canary.run")
    assert result.error == "FC.InvalidHandler"
    assert not place.marker.exists()
    assert "canary" not in sys.modules


def test_a_symlink_to_a_file_outside_is_refused(place):
    (place.fns / "evil.py").symlink_to(place.outside / "canary.py")
    error = refused("evil.run")
    assert error.reason == (
        "evil.py is outside the functions folders (a symbolic link), so evil.run cannot be used"
    )
    assert run_saved_row("evil.run").error == "FC.InvalidHandler"
    assert not place.marker.exists()


def test_a_symlinked_folder_inside_pointing_outside_is_refused(place):
    (place.fns / "linked").symlink_to(place.outside, target_is_directory=True)
    for handler in ("linked.canary.run", "linked.run"):
        refused(handler)
        assert run_saved_row(handler, name=handler.replace(".", "_")).error == "FC.InvalidHandler"
    assert not place.marker.exists()


def test_a_package_whose_init_is_a_symlink_outside_is_refused(place):
    # Loading pkg2.mod runs pkg2/__init__.py first: that file counts too.
    (place.fns / "pkg2").mkdir()
    (place.fns / "pkg2" / "__init__.py").symlink_to(place.outside / "canary.py")
    (place.fns / "pkg2" / "mod.py").write_text("def handler(event, context):\n    return 1\n")
    refused("pkg2.mod.handler")
    assert run_saved_row("pkg2.mod.handler").error == "FC.InvalidHandler"
    assert not place.marker.exists()


def test_a_symlink_that_stays_inside_is_fine(place):
    (place.fns / "alias.py").symlink_to(place.fns / "real.py")
    services.function_create(name="alias", handler="alias.handler", actor=SYSTEM)
    assert services.invoke("alias", {}).output["Body"] == "real"


def test_a_functions_folder_given_as_a_symlink_is_its_real_folder(place, settings):
    (place.tmp / "fns-link").symlink_to(place.fns, target_is_directory=True)
    settings.FLOWSITE_FUNCTIONS_PATH = [str(place.tmp / "fns-link")]
    services.function_create(name="real", handler="real.handler", actor=SYSTEM)
    assert services.invoke("real", {}).output["Body"] == "real"


@pytest.mark.parametrize(
    "handler",
    [
        "\u043es.system",  # Cyrillic o
        "os.\u0455ystem",  # Cyrillic s
        "\uff4f\uff53.system",  # fullwidth "os"
        "\ufb01le.run",  # the "fi" ligature (NFKC: "file")
        "re\u0430l.handler",  # Cyrillic a in a name that exists
        "real.handler\u200b",  # zero-width space
    ],
)
def test_unicode_look_alikes_are_refused(place, handler):
    error = refused(handler)
    assert "ASCII letters, digits and _" in error.reason
    assert run_saved_row(handler).error == "FC.InvalidHandler"


def test_a_file_with_a_look_alike_name_is_still_refused(place):
    (place.fns / "t\u0435st.py").write_text("def run(event, context):\n    return 1\n")
    refused("t\u0435st.run")


def test_very_long_paths_are_refused_without_touching_the_file_system(place):
    error = refused("a" * 250 + ".run")  # a part longer than most file systems allow
    assert error.reason.startswith("no module")
    error = refused("a." * 120 + "run")  # deep, but within 255 characters
    assert error.reason.startswith("no module")
    error = refused("a" * 300 + ".run")
    assert error.reason == "longer than 255 characters"


@pytest.mark.parametrize(
    "handler",
    [
        "builtins.__import__",
        "real.__builtins__",
        "real.__class__",
        "__init__.handler",
        "pkg.__init__.handler",
        "real._handler",
        "_real.handler",
        "class.run",
        "real.lambda",
    ],
)
def test_private_dunder_and_keyword_names_are_refused(place, handler):
    refused(handler)
    assert run_saved_row(handler).error == "FC.InvalidHandler"


# --- a module named like the standard library ---------------------------------------------------


def test_a_stdlib_name_resolves_only_to_the_folders_own_file(place):
    import json as stdlib_json

    refused("json.loads")  # no json.py in the folder: the standard library is never reached
    (place.fns / "json.py").write_text("def loads(event, context):\n    return 'folder json'\n")
    services.function_create(name="j", handler="json.loads", actor=SYSTEM)
    assert services.invoke("j", {"a": 1}).output["Body"] == "folder json"
    # The folder's json.py did not replace the standard library's for anyone else.
    assert sys.modules["json"] is stdlib_json
    assert stdlib_json.loads("[1]") == [1]


# --- what the module holds is checked when a worker loads it ------------------------------------


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("os", "is a module, not a function"),
        ("system", "is not a Python function"),
        ("getoutput", "is defined outside the functions folders"),
        ("rmtree", "is defined outside the functions folders"),
        ("LIMIT", "is not a function"),
        ("run_anything", "is not a Python function"),
        ("Handler", "is a class, not a function"),
        ("later", "is an async function"),
        ("missing", "has no function missing"),
    ],
)
def test_names_that_are_not_plain_functions_of_the_folder_fail_at_run_time(attribute, reason):
    handler = f"confinement_cases.{attribute}"
    # The file is in a functions folder, so saving works; what the name is, only loading tells.
    services.function_create(name="case", handler=handler, actor=SYSTEM)
    result = services.invoke("case", {})
    assert result.error == "FC.InvalidHandler", result
    assert reason in result.cause


def test_a_decorated_function_of_the_folder_is_a_handler():
    services.function_create(name="d", handler="confinement_cases.decorated", actor=SYSTEM)
    assert services.invoke("d", {}).output["Body"] == {"ok": True}


# --- loading: once per process, packages, broken modules -----------------------------------


def test_the_module_is_loaded_once_so_its_state_persists():
    services.function_create(name="count", handler="apihandlers.count", actor=SYSTEM)
    first = services.invoke("count", {}).output["Body"]["calls"]
    assert services.invoke("count", {}).output["Body"]["calls"] == first + 1
    module = loader.load_module("apihandlers")
    assert module.count_calls() == first + 1
    assert module.__name__.startswith("flowsite_functions_") and module.__name__ != "apihandlers"


def test_packages_in_a_folder_work_with_relative_imports():
    services.function_create(name="p", handler="pkg.handler", actor=SYSTEM)
    services.function_create(name="pm", handler="pkg.mod.handler", actor=SYSTEM)
    assert services.invoke("p", {}).output["Body"] == {"package": True}
    assert services.invoke("pm", {}).output["Body"] == {
        "module": "mod",
        "helper": "from the package's own helper",
    }


def test_a_module_that_fails_to_load_reports_only_its_own_frames(place):
    (place.fns / "broken.py").write_text("def helper():\n    raise KeyError('setup')\n\nhelper()\n")
    (place.fns / "bad_syntax.py").write_text("def run(event, context)\n    return 1\n")
    services.function_create(name="b", handler="broken.run", actor=SYSTEM)
    services.function_create(name="s", handler="bad_syntax.run", actor=SYSTEM)
    broken = services.invoke("b", {})
    assert broken.error == "FC.InvalidHandler"
    assert broken.cause.startswith("cannot load broken.run: KeyError: 'setup'\nTraceback")
    assert '  File "broken.py", line 4, in <module>' in broken.cause
    assert '  File "broken.py", line 2, in helper' in broken.cause
    syntax = services.invoke("s", {})
    assert syntax.error == "FC.InvalidHandler"
    assert "SyntaxError" in syntax.cause and "bad_syntax.py" in syntax.cause
    for cause in (broken.cause, syntax.cause):
        assert str(place.fns) not in cause and "importlib" not in cause
        assert "functions/loader.py" not in cause and "services.py" not in cause


def test_a_module_that_hangs_while_loading_is_stopped_by_the_time_limit(place):
    (place.fns / "hangs.py").write_text("while True:\n    pass\n")
    Function.objects.create(name="h", handler="hangs.run", timeout_seconds=1)
    result = services.invoke("h", {})
    assert result.error == "FC.FunctionTimeout"
    assert not any(name.endswith(".hangs") for name in sys.modules)


# --- unsafe folders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "handler"),
    [
        (os.path.dirname(os.__file__), "os.system"),  # the standard library itself
        (str(Path(__file__).resolve().parents[2]), "functions.services.invoke"),  # flowsite
        ("/", "etc.passwd"),
    ],
)
def test_a_folder_overlapping_python_or_flowsite_is_never_searched(settings, folder, handler):
    from functions.checks import check_functions_path

    settings.FLOWSITE_FUNCTIONS_PATH = [folder]
    assert loader.folders() == []
    refused(handler)
    assert [w.id for w in check_functions_path()] == ["functions.W002"]


def test_a_missing_folder_is_reported_by_the_system_check(settings, tmp_path):
    from functions.checks import check_functions_path

    settings.FLOWSITE_FUNCTIONS_PATH = [str(tmp_path / "nope")]
    assert [w.id for w in check_functions_path()] == ["functions.W001"]
