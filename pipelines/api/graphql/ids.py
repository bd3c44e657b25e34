"""The GraphQL API's opaque ids: url-safe base64 of ``"<Type>:<primary key>"``.

A pipeline id given where a workflow id belongs is recognised and refused with a message that
says so. The admin and the definitions API show a definition's id (``definition_id``).
"""

from __future__ import annotations

import base64
import binascii

from pipelines.api.parsing import parse_id
from pipelines.errors import InvalidInput
from pipelines.models import PipelineDefinition

APPLICATION, PIPELINE, WORKFLOW, EXECUTION = "Application", "Pipeline", "Workflow", "Execution"
TYPE_FOR_KIND = {
    PipelineDefinition.Kind.PIPELINE: PIPELINE,
    PipelineDefinition.Kind.WORKFLOW: WORKFLOW,
}


def encode_id(type_name: str, pk: int) -> str:
    """The opaque id of a row: url-safe base64 of ``"<Type>:<pk>"`` without padding."""
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_id(value: str) -> tuple[str, int] | None:
    """``(type, pk)`` for an id made by ``encode_id``; None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, text = raw.partition(":")
    pk = parse_id(text)
    if pk is None or type_name not in (APPLICATION, PIPELINE, WORKFLOW, EXECUTION):
        return None
    return type_name, pk


def definition_id(definition: PipelineDefinition) -> str:
    return encode_id(TYPE_FOR_KIND[definition.kind], definition.pk)


def expect_id(value: str, type_name: str, argument: str) -> int:
    decoded = decode_id(value)
    if decoded is None:
        raise InvalidInput(f"{argument} {value!r} is not a valid {type_name.lower()} id")
    found_type, pk = decoded
    if found_type != type_name:
        raise InvalidInput(
            f"{argument} {value!r} is the id of a {found_type.lower()}, not of a"
            f" {type_name.lower()}"
        )
    return pk
