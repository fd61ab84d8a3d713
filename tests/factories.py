"""factory_boy factories for the project's models.

Flows are made through ``executions.services.flow_create`` (so a ``FlowVersion`` exists and the
definition is compiled), never with ``Flow.objects.create``.
"""

from __future__ import annotations

import functools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from executions import services as execution_services
from executions.models import Flow
from flowsite.access import SYSTEM
from functions.models import Function

PASSWORD = "pw-factory-123456"

# A flow that completes inline during the start request: output {"x": <input.a>}.
PASS_FLOW = """\
Type: StateMachine
Name: pass
SpecVersion: v1
StartAt: P
States:
  - Type: Pass
    Name: P
    InputConstructor:
      x.$: $Input.a
    End: true
"""

# A flow that fails inline with error code "Boom".
FAIL_FLOW = """\
Type: StateMachine
Name: fail
SpecVersion: v1
StartAt: F
States:
  - Type: Fail
    Name: F
    Code: Boom
    Detail: it broke
    End: true
"""

# A flow that stays Running (an hour's Wait): for stop and name reuse while running.
WAIT_FLOW = """\
Type: StateMachine
Name: wait
SpecVersion: v1
StartAt: W
States:
  - Type: Wait
    Name: W
    Seconds: 3600
    End: true
"""


@functools.cache
def _password_hash() -> str:
    return make_password(PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    # Hashed once: PBKDF2 with Django's iteration count takes ~0.5 s per user.
    password = factory.LazyFunction(lambda: _password_hash())

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        """``UserFactory(roles=["operator"])``: the user's roles (Django groups)."""
        if create and extracted:
            from django.contrib.auth.models import Group

            for role in extracted:
                self.groups.add(Group.objects.get(name=role))


class FunctionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Function

    name = factory.Sequence(lambda n: f"fn{n}")
    handler = "apihandlers.echo"
    description = ""
    timeout_seconds = 60


class FlowFactory(factory.Factory):
    """``FlowFactory(name=..., definition=...)`` -> a saved Flow with version 1."""

    class Meta:
        model = Flow

    name = factory.Sequence(lambda n: f"flow{n}")
    definition = PASS_FLOW
    description = ""

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return execution_services.flow_create(**kwargs, actor=SYSTEM)

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        return model_class(**kwargs)
