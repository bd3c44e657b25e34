"""A hook's secrets sealed at rest: Fernet tokens under the keys of PIPEHOOK_ENCRYPTION_KEYS.

What is sealed: a hook's secret token, signing secret, custom header values and its URL
(whose userinfo and query may hold credentials; a masked copy is kept beside it to show).
The database, its dumps and its backups hold Fernet tokens (AES-128-CBC with an HMAC,
``cryptography``'s ``MultiFernet``), never the secrets.

- **Keys.** ``PIPEHOOK_ENCRYPTION_KEYS`` lists Fernet keys: the first seals, every one
  opens. Unset, one key is generated into ``var/encryption_key`` (config/settings.py), as
  ``SECRET_KEY`` is. A rotation puts a new key first, re-seals every stored secret under it
  (``manage.py rotate_encryption_key``), then drops the old key.
- **A sealed value stays sealed in memory.** A sealed field's Python value is a ``Sealed``:
  it shows as ``Sealed(set)`` in reprs, logs and templates, and ``reveal()`` decrypts it.
  Only the code building a request calls ``reveal()`` (the headers, the signature, the URL
  the transport connects to), plus one edit: a URL sent back masked is completed from the
  stored one (``hooks.validators.check_url``). Whether a secret is set needs no key; two
  hooks never compare secrets.
- **Assigning plain text seals it at once** (``hook.token = "…"``); a ``Sealed`` is taken
  as it is, so a kept secret is never opened to be stored again.
- **A value no key opens** raises ``SecretUnreadable`` (a refusal saying which setting to
  fix): a batch records that delivery's attempt as failed with that reason, and the API
  and the admin answer it as a failed test or resend; nothing else of the batch is touched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from pipelines.errors import DomainError

KEYS_SETTING = "PIPEHOOK_ENCRYPTION_KEYS"


class SecretUnreadable(DomainError):
    """A stored secret that none of the configured keys opens."""

    status_code = 422

    def __init__(self, what: str = "a stored secret"):
        super().__init__(
            f"{what} cannot be decrypted with any key in {KEYS_SETTING}: give that setting"
            " back the key it was sealed with (see `manage.py rotate_encryption_key --help`)"
        )


@functools.lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    """(every key, the first key alone) for these keys; cached per list of keys."""
    if not keys:
        raise ImproperlyConfigured(f"{KEYS_SETTING} holds no key")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # The key itself is never part of the message.
            raise ImproperlyConfigured(
                f"{KEYS_SETTING}: key {position} is not a Fernet key (32 url-safe base64-encoded"
                " bytes); `manage.py rotate_encryption_key --new-key` prints one"
            ) from None
    return MultiFernet(fernets), fernets[0]


def _keys() -> tuple[MultiFernet, Fernet]:
    # Read at each use, not at import: settings overridden in tests and a changed setting
    # are followed; the cache makes it one tuple comparison.
    return _fernets(tuple(getattr(settings, KEYS_SETTING)))


def seal(text: str) -> str:
    """``text`` sealed under the first key, as stored; an empty text stays empty."""
    return _keys()[0].encrypt(text.encode()).decode() if text else ""


def unseal(stored: str, what: str = "a stored secret") -> str:
    """The plain text of a stored value, opened with whichever key sealed it."""
    if not stored:
        return ""
    try:
        return _keys()[0].decrypt(stored.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(what) from None


def reseal(stored: str) -> str | None:
    """``stored`` sealed again under the first key, or None when it is under it already."""
    if not stored:
        return None
    every_key, first_key = _keys()
    try:
        first_key.decrypt(stored.encode())
        return None
    except InvalidToken:
        pass
    try:
        return every_key.rotate(stored.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable() from None


class Sealed:
    """A secret as stored: its Fernet token. ``reveal()`` is the only way to its text.

    Equal to another ``Sealed`` of the same stored text; an empty one equals ``""`` (so a
    form sees an unset secret as unchanged). Whether a set secret equals a given text is
    not known without opening it, so it never equals one.
    """

    __slots__ = ("stored",)

    def __init__(self, stored: str = ""):
        self.stored = stored or ""

    @classmethod
    def of(cls, text: str) -> Sealed:
        """A plain text sealed now."""
        if not isinstance(text, str):
            raise TypeError(f"only text can be sealed, not {type(text).__name__}")
        return cls(seal(text))

    def reveal(self) -> str:
        """The secret's text, for the request being built."""
        return unseal(self.stored)

    def __bool__(self) -> bool:
        return bool(self.stored)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sealed):
            return self.stored == other.stored
        if other == "":
            return not self.stored
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.stored)

    def __repr__(self) -> str:
        return f"Sealed({'set' if self else 'empty'})"

    __str__ = __repr__


def each_leaf(value: Any, change: Callable[[Any], Any]) -> Any:
    """``value`` with ``change`` applied to each value that is neither a JSON object nor a
    list: a text field's value itself, a JSON object's values, a list's items."""
    if isinstance(value, dict):
        return {name: each_leaf(item, change) for name, item in value.items()}
    if isinstance(value, list):
        return [each_leaf(item, change) for item in value]
    return change(value)


def _as_sealed(value: Any) -> Any:
    return Sealed(value) if isinstance(value, str) else value


def _as_stored(value: Any) -> Any:
    if isinstance(value, Sealed):
        return value.stored
    if isinstance(value, str) and value:
        # Never store a plain text by mistake; assignment seals it (``SealedAttribute``).
        raise TypeError("a sealed field stores Sealed values, not plain text")
    return value


def _sealed_now(value: Any) -> Any:
    return Sealed.of(value) if isinstance(value, str) else value


def _revealed(value: Any) -> Any:
    return value.reveal() if isinstance(value, Sealed) else value


def from_stored(value: Any) -> Any:
    """A stored value as a sealed field holds it: each text a ``Sealed``."""
    return each_leaf(value, _as_sealed)


def to_stored(value: Any) -> Any:
    """The inverse of ``from_stored``: each ``Sealed`` its stored text."""
    return each_leaf(value, _as_stored)


def sealed_now(value: Any) -> Any:
    """Each plain text in ``value`` sealed now; a ``Sealed`` as it is."""
    return each_leaf(value, _sealed_now)


def revealed(value: Any) -> Any:
    """``value`` with every ``Sealed`` in it opened (a custom headers object, say)."""
    return each_leaf(value, _revealed)


class SealedAttribute(DeferredAttribute):
    """Seals plain text the moment it is assigned; keeps a ``Sealed`` as it is."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        field = self.field
        if value is None:
            value = field.get_default()
        if field.masked_copy and isinstance(value, str):
            copy_name, mask = field.masked_copy
            setattr(instance, copy_name, mask(value))
        instance.__dict__[field.attname] = sealed_now(value)


class SealedTextField(models.TextField):
    """Text stored sealed (the Fernet token as text); its value is a ``Sealed``.

    ``masked_copy=("field_name", function)``: when plain text is assigned, ``function`` of
    it goes into that plain field too, e.g. a URL with its credentials masked, so showing
    it needs no key. Declare that field before this one (a model's constructor sets the
    fields in order, and would put the copy's default back after this one set it).
    """

    descriptor_class = SealedAttribute

    def __init__(self, *args, masked_copy: tuple[str, Callable[[str], str]] | None = None, **kw):
        self.masked_copy = masked_copy
        super().__init__(*args, **kw)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.masked_copy:
            kwargs["masked_copy"] = self.masked_copy
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection) -> Sealed:
        return Sealed(value)

    def to_python(self, value) -> Sealed:
        # Text here is stored text: a fixture's or a serialized row's.
        return value if isinstance(value, Sealed) else Sealed(value)

    def get_prep_value(self, value):
        return to_stored(value) or ""

    def value_to_string(self, obj) -> str:
        return to_stored(self.value_from_object(obj))


class SealedJSONField(models.JSONField):
    """A JSON object (or list) whose text values are each stored sealed, as ``Sealed``;
    names and other values stay plain. Custom headers: names shown, values sealed. A list
    of earlier signing secrets would be one too."""

    descriptor_class = SealedAttribute
    masked_copy = None

    def from_db_value(self, value, expression, connection):
        return from_stored(super().from_db_value(value, expression, connection))

    def to_python(self, value):
        return from_stored(value)

    def get_prep_value(self, value):
        return super().get_prep_value(to_stored(value))

    def validate(self, value, model_instance) -> None:
        super().validate(to_stored(value), model_instance)

    def value_to_string(self, obj):
        return to_stored(self.value_from_object(obj))
