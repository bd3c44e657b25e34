"""``manage.py createtoken --user NAME --scopes api``: print a new access token, nothing else."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from pipelines import services
from pipelines.errors import ServiceError
from pipelines.models import Project


class Command(BaseCommand):
    help = "Create an API access token for a user (created if missing) and print it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="Username; created if it does not exist.")
        parser.add_argument(
            "--scopes", default="api", help="Comma-separated: api, read_api (default: api)."
        )
        parser.add_argument("--name", default="cli", help="A name to recognise the token by.")
        parser.add_argument(
            "--project", action="append", default=[], help="Limit to a project id (repeatable)."
        )
        parser.add_argument(
            "--group", action="append", default=[], help="Scope to a user group (repeatable)."
        )

    def handle(self, *args, **options) -> None:
        user, _ = get_user_model().objects.get_or_create(username=options["user"])
        projects = []
        for project_id in options["project"]:
            project = Project.objects.filter(pk=project_id).first()
            if project is None:
                raise CommandError(f"No project with id {project_id}.")
            projects.append(project)
        groups = []
        for name in options["group"]:
            group = Group.objects.filter(name=name).first()
            if group is None:
                raise CommandError(f"No user group named {name!r}.")
            groups.append(group)
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            _, raw = services.create_token(
                user, scopes=scopes, name=options["name"], projects=projects, groups=groups
            )
        except ServiceError as error:
            raise CommandError(error.message) from None
        self.stdout.write(raw)
