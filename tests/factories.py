import factory
from django.contrib.auth import get_user_model

from pipelines.models import Job, Pipeline, Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Builder{n}")


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
