"""``python manage.py flowsite_demo``: load the demo functions and flows.

Idempotent: functions (from ``demo/functions/functions.yaml``) and flows (``demo/flows/*.yaml``,
flow name = file stem) are created when missing, updated when they differ, and left alone when
they match, so running it again changes nothing. Writes go through the services, so every flow
definition is validated and every change to one makes a new version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from executions import services as flow_services
from executions.models import Flow
from flowsite.errors import ServiceError
from functions import services as function_services
from functions.models import Function

DEMO_DIR = Path(settings.BASE_DIR) / "demo"
FUNCTION_FIELDS = ("handler", "description", "timeout_seconds")


class Command(BaseCommand):
    help = "Create or update the demo functions and flows (safe to run again)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--quiet", action="store_true", help="print nothing unless something fails"
        )
        parser.add_argument(
            "--demo-dir",
            default=str(DEMO_DIR),
            help="folder with functions/functions.yaml and flows/*.yaml (default: repo's demo/)",
        )

    def handle(
        self, *args: Any, quiet: bool = False, demo_dir: str = str(DEMO_DIR), **options: Any
    ) -> None:
        self.quiet = quiet
        root = Path(demo_dir)
        functions_dir = root / "functions"
        manifest = functions_dir / "functions.yaml"
        flows_dir = root / "flows"
        if not manifest.is_file():
            raise CommandError(f"no function manifest at {manifest}")
        if not flows_dir.is_dir():
            raise CommandError(f"no flows folder at {flows_dir}")

        counts = {"created": 0, "updated": 0, "unchanged": 0}
        # All or nothing: a bad file leaves the database as it was.
        with transaction.atomic():
            # Functions first, so the flows' references resolve (no "does not exist" warnings).
            for spec in self.read_manifest(manifest):
                counts[self.load_function(spec)] += 1
            for path in sorted(flows_dir.glob("*.yaml")):
                counts[self.load_flow(path)] += 1

        resolved = str(functions_dir.resolve())
        if resolved not in settings.FLOWSITE_FUNCTIONS_PATH:
            self.stderr.write(
                self.style.WARNING(
                    f"warning: {resolved} is not on FLOWSITE_FUNCTIONS_PATH; the demo handlers "
                    "will fail with FC.InvalidHandler until it is added"
                )
            )
        self.say(
            f"demo: {counts['created']} created, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged",
            self.style.SUCCESS,
        )

    # --- output ------------------------------------------------------------------------------

    def say(self, text: str, style=None) -> None:
        if not self.quiet:
            self.stdout.write(style(text) if style else text)

    # --- functions ---------------------------------------------------------------------------

    def read_manifest(self, path: Path) -> list[dict]:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CommandError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise CommandError(f"{path}: expected a list of functions (name, handler, ...)")
        specs = []
        for i, item in enumerate(data):
            unknown = set(item) - {"name", *FUNCTION_FIELDS}
            if unknown or "name" not in item or "handler" not in item:
                extra = ", ".join(sorted(unknown)) or "-"
                raise CommandError(
                    f"{path}: function #{i + 1} needs name and handler (and may have "
                    f"description, timeout_seconds); unexpected: {extra}"
                )
            specs.append(
                {
                    "name": str(item["name"]),
                    "handler": str(item["handler"]),
                    "description": str(item.get("description") or "").strip(),
                    "timeout_seconds": item.get("timeout_seconds", 60),
                }
            )
        return specs

    def load_function(self, spec: dict) -> str:
        name = spec["name"]
        existing = Function.objects.filter(name=name).first()
        try:
            if existing is None:
                function_services.function_create(**spec, actor=function_services.SYSTEM)
                self.say(f"function {name}: created ({spec['handler']})")
                return "created"
            changes = {k: spec[k] for k in FUNCTION_FIELDS if getattr(existing, k) != spec[k]}
            if not changes:
                self.say(f"function {name}: unchanged")
                return "unchanged"
            function_services.function_update(
                function=existing, actor=function_services.SYSTEM, **changes
            )
        except ServiceError as exc:
            raise CommandError(f"function {name}: {exc.code}: {exc.message}") from None
        self.say(f"function {name}: updated ({', '.join(sorted(changes))})")
        return "updated"

    # --- flows -------------------------------------------------------------------------------

    def load_flow(self, path: Path) -> str:
        name = path.stem
        definition = path.read_text(encoding="utf-8")
        description = _description(definition)
        flow = Flow.objects.filter(name=name).first()
        try:
            if flow is None:
                flow = flow_services.flow_create(
                    name=name,
                    definition=definition,
                    description=description,
                    actor=function_services.SYSTEM,
                )
                self.say(f"flow {name}: created ({flow.dialect}, v{flow.version})")
                self.warnings(name, flow)
                return "created"
            if flow.definition == definition and flow.description == description:
                self.say(f"flow {name}: unchanged (v{flow.version})")
                return "unchanged"
            flow = flow_services.flow_update(
                flow=flow,
                definition=definition,
                description=description,
                actor=function_services.SYSTEM,
            )
        except ServiceError as exc:
            details = "".join(
                f"\n  {e.get('path') or '<document>'}"
                + (f" (line {e['line']})" if e.get("line") else "")
                + f": {e.get('message')}"
                for e in exc.errors
            )
            raise CommandError(
                f"flow {name} ({path}): {exc.code}: {exc.message}{details}"
            ) from None
        self.say(f"flow {name}: updated (now v{flow.version})")
        self.warnings(name, flow)
        return "updated"

    def warnings(self, name: str, flow: Flow) -> None:
        for warning in getattr(flow, "warnings", []) or []:
            self.stderr.write(
                self.style.WARNING(
                    f"warning: flow {name}: {warning.get('path')}: {warning.get('message')}"
                )
            )


def _description(definition: str) -> str:
    """The definition's own Description (CloudFlow) or description (legacy), if any."""
    try:
        data = yaml.safe_load(definition)
    except yaml.YAMLError:
        return ""  # the compiler reports the problem
    if not isinstance(data, dict):
        return ""
    value = data.get("Description", data.get("description", ""))
    return str(value).strip() if value else ""
