"""The variables a pipeline definition declares: names, types, whether they are required.

Pure rules on the stored list, kept below the models because the definition's field and its
``clean`` check them; binding a caller's values to them is ``pipelines.executions``.
"""

import re

from django.core.exceptions import ValidationError
from django.db import models

# Pipeline variables become GitLab variables, whose keys GitLab limits to these characters.
VARIABLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,255}")


class VariableType(models.TextChoices):
    """Declared variable types, named as release tooling names them."""

    TEXT = "Text"
    NUMBER = "Number"
    EMAIL = "Email"
    ENVIRONMENT = "Environment"
    SERVICE = "Service"
    INFRASTRUCTURE_DEFINITION = "Infrastructure definition"


def normalize_variable_declarations(value: object) -> list[dict]:
    """``[{name, type, required}]`` with defaults filled in; ValidationError says what is wrong."""
    if not isinstance(value, list):
        raise ValidationError("variables must be a list of {name, type, required} objects")
    result: list[dict] = []
    seen: set[str] = set()
    for position, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise ValidationError(f"variable {position} must be an object with name and type")
        unknown = set(item) - {"name", "type", "required"}
        if unknown:
            raise ValidationError(
                f"variable {position} has unknown fields: {', '.join(sorted(unknown))}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not VARIABLE_NAME_PATTERN.fullmatch(name):
            raise ValidationError(
                f"variable {position}: name must be 1-255 letters, digits or underscores"
            )
        if name in seen:
            raise ValidationError(f"variable {name!r} is declared more than once")
        seen.add(name)
        kind = item.get("type", VariableType.TEXT)
        if kind not in VariableType.values:
            raise ValidationError(
                f"variable {name!r}: type {kind!r} is not one of: {', '.join(VariableType.values)}"
            )
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise ValidationError(f"variable {name!r}: required must be true or false")
        result.append({"name": name, "type": kind, "required": required})
    return result


def validate_variable_declarations(value: object) -> None:
    normalize_variable_declarations(value)
