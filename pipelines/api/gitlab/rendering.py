"""Serializers whose fields are built once per class, not once per use.

DRF builds a serializer's fields anew for every instance: a ModelSerializer reads its
model's fields, and every serializer deep-copies its declared ones, only to render one object
or check one request's parameters. On a commit status request that was a sixth of the time.
The entities and the endpoints' parameters read nothing from their serializer's context and
their fields keep no state between uses (what a check finds is kept on the serializer, not on
its fields), so the fields of one instance of each class, kept for the life of the process,
serve every instance of that class; what each rendering or check gives is unchanged.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import cached_property

_prototypes: dict[type, Any] = {}


class FieldsBuiltOnce:
    """Mix into a serializer (before DRF's class) that reads nothing from its context: every
    instance uses the fields of one kept instance of its class."""

    @cached_property
    def fields(self) -> Any:
        cls = type(self)
        prototype = _prototypes.get(cls)
        if prototype is None:
            # Two threads may both make one the first time; the first one kept serves both.
            # A fresh instance, so that no request or object is kept with it.
            prototype = _prototypes.setdefault(cls, cls())
        if prototype is self:
            return super().fields
        return prototype.fields
