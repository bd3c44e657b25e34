import json

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from pipelines.models import Job, Pipeline, Project
from pipelines.signals import PipelineChange


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Builder{n}")


# Every right a token can use: what the API tests' callers hold unless a test says otherwise.
ALL_PROJECT_PERMISSIONS = (
    "view_project",
    "change_project",
    "add_project",
    "start_execution",
    "manage_hooks",
)


def grant_permissions(user, *codenames: str):
    """Give ``user`` these ``pipelines`` permissions on every project; returns the user."""
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pipelines", codename__in=codenames)
    )
    # Django caches a user's permissions on the instance.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    return user


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    path = factory.Sequence(lambda n: f"project-{n}")
    namespace = "acme"
    description = "A project"
    default_branch = "main"


class PipelineFactory(factory.django.DjangoModelFactory):
    """A pipeline row written directly; use pipelines.services to get signals and hooks."""

    class Meta:
        model = Pipeline

    project = factory.SubFactory(ProjectFactory)
    iid = factory.Sequence(lambda n: n + 1)
    ref = "main"
    sha = factory.Sequence(lambda n: f"{n:040x}")
    source = Pipeline.Source.PUSH


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    pipeline = factory.SubFactory(PipelineFactory)
    name = factory.Sequence(lambda n: f"job-{n}")
    stage = "test"


class HookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "hooks.Hook"

    project = factory.SubFactory(ProjectFactory)
    url = "http://127.0.0.1:9/hook"


class EventFactory(factory.django.DjangoModelFactory):
    """An outbox event written directly: a pipeline that finished with ``status``. Pipeline
    changes made through pipelines.services write real ones, payload and all."""

    class Meta:
        model = "hooks.Event"

    pipeline = None
    project = factory.Maybe(
        "pipeline",
        yes_declaration=factory.SelfAttribute("pipeline.project"),
        no_declaration=factory.SubFactory(ProjectFactory),
    )
    change = PipelineChange.FINISHED
    status = "success"
    previous_status = "running"
    body = factory.LazyAttribute(
        lambda event: json.dumps(
            {"object_kind": "pipeline", "object_attributes": {"status": event.status}}
        )
    )


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A delivery of a new event of the hook's project to the hook, written directly."""

    class Meta:
        model = "hooks.Delivery"

    hook = factory.SubFactory(HookFactory)
    event = factory.SubFactory(EventFactory, project=factory.SelfAttribute("..hook.project"))
    # Deliveries of one pipeline to a hook go out in id order, as the outbox writes them; an
    # event of no pipeline is an order of its own.
    order_key = factory.LazyAttribute(
        lambda delivery: delivery.event.pipeline_id or delivery.event.pk
    )
