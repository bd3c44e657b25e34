"""``manage.py rotate_encryption_key``: seal every stored secret again under the first key.

A rotation, step by step (the README's production section says the same):

1. ``manage.py rotate_encryption_key --new-key`` prints a new key.
2. Put it first in ``PIPEHOOK_ENCRYPTION_KEYS``, the old key after it (``new,old``), on
   every process, and restart them: what is sealed from then on is under the new key, and
   both keys open everything.
3. ``manage.py rotate_encryption_key`` seals every stored secret again under the new key,
   in batches, each its own short transaction, while hooks go on being delivered. Run it
   again whenever you like: a secret under the first key already is left as it is.
4. Remove the old key from ``PIPEHOOK_ENCRYPTION_KEYS`` everywhere and restart.

A secret no key opens is left as it is and named (model, row, field); the command then
fails, so a script does not go on to step 4 with secrets only the old key opens.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from hooks.sealing import (
    KEYS_SETTING,
    Sealed,
    SealedJSONField,
    SealedTextField,
    SecretUnreadable,
    each_leaf,
    reseal,
)


def sealed_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every model with sealed fields, and the names of those fields."""
    found = []
    for model in apps.get_models():
        names = [
            field.name
            for field in model._meta.concrete_fields
            if isinstance(field, SealedTextField | SealedJSONField)
        ]
        if names:
            found.append((model, names))
    return found


class Command(BaseCommand):
    help = (
        f"Seal every stored secret again under the first key of {KEYS_SETTING}, so that the"
        " other keys can be removed. --new-key prints a new key to put first."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--new-key", action="store_true", help="Print a new key and change nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )

    def handle(self, *args, **options) -> None:
        if options["new_key"]:
            self.stdout.write(Fernet.generate_key().decode())
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        self.resealed = 0
        self.unreadable: list[str] = []
        for model, names in sealed_fields():
            self.reseal_model(model, names, options["batch_size"])
        if self.unreadable:
            raise CommandError(
                f"{len(self.unreadable)} sealed secret(s) no key of {KEYS_SETTING} opens were"
                f" left as they are: {', '.join(self.unreadable)}. Put back the key they were"
                " sealed with and run this again; remove no key before then."
            )
        others = len(settings.PIPEHOOK_ENCRYPTION_KEYS) - 1
        self.stdout.write(
            f"Every sealed secret is under the first key ({self.resealed} re-sealed)."
        )
        if others:
            self.stdout.write(
                f"Next: remove the other {others} key(s) from {KEYS_SETTING} on every process"
                " and restart them."
            )
        else:
            self.stdout.write(
                f"{KEYS_SETTING} holds one key, so there was nothing to rotate from. To rotate:"
                " put a new key (--new-key) before it, restart every process, run this again."
            )

    def reseal_model(self, model: type[models.Model], names: list[str], batch_size: int) -> None:
        label = model._meta.label
        total = model.objects.count()
        resealed_before = self.resealed
        looked_at = last_pk = 0
        while True:
            # Locked while re-sealed (PostgreSQL; SQLite's writes queue anyway): an edit
            # meanwhile waits for this batch, and is never overwritten by an older value.
            with transaction.atomic():
                rows = list(
                    model.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .only("pk", *names)[:batch_size]
                )
                for row in rows:
                    changed = {}
                    for name in names:
                        where = f"{label} {row.pk} {name}"
                        value, count = self.reseal_value(getattr(row, name), where)
                        if count:
                            changed[name] = value
                            self.resealed += count
                    if changed:
                        model.objects.filter(pk=row.pk).update(**changed)
            if not rows:
                break
            last_pk = rows[-1].pk
            looked_at += len(rows)
            self.stdout.write(
                f"{label}: {looked_at}/{total} rows looked at,"
                f" {self.resealed - resealed_before} secret(s) re-sealed"
            )

    def reseal_value(self, value: Any, where: str) -> tuple[Any, int]:
        """(``value`` with each Sealed in it under the first key, how many changed)."""
        changed = 0

        def again(leaf: Any) -> Any:
            nonlocal changed
            if not isinstance(leaf, Sealed):
                return leaf
            try:
                resealed = reseal(leaf.stored)
            except SecretUnreadable:
                self.unreadable.append(where)
                return leaf
            if resealed is None:
                return leaf
            changed += 1
            return Sealed(resealed)

        return each_leaf(value, again), changed
