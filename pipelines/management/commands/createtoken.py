"""``manage.py createtoken --user NAME --scopes api``: print a new access token.

The token alone goes to standard output, so scripts can capture it; what the token will be
able to do goes to standard error. A token acts with its owner's permissions, so a user this
command creates holds none and its token can do nothing until someone grants them.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pipelines import auth
from pipelines.api.parsing import parse_id
from pipelines.errors import DomainError
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
        # One transaction: a refused project, group or scope leaves no new user behind.
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=options["user"])
            token, raw = self.create_token(user, options)
        if created:
            self.stderr.write(f"Created user {user.get_username()}.")
        self.stderr.write(auth.describe_rights(token))
        self.stdout.write(raw)

    def create_token(self, user, options) -> tuple:
        projects = []
        for project_id in options["project"]:
            number = parse_id(project_id)
            project = Project.objects.filter(pk=number).first() if number is not None else None
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
            return auth.create_token(
                user, scopes=scopes, name=options["name"], projects=projects, groups=groups
            )
        except DomainError as error:
            raise CommandError(error.message) from None
