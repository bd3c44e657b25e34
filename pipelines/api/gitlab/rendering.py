"""Entities rendered with fields built once per class, not once per rendering.

DRF builds a serializer's fields anew for every instance it is given: a ModelSerializer reads
its model's fields and deep-copies its declared ones, only to render one object. On a
commit status request that was a tenth of the time. The entities read nothing from their
serializer's context and keep no state between renderings, so one instance of each class,
kept for the life of the process, renders every object of that class; what each rendering
gives is unchanged.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import cached_property

_prototypes: dict[type, Any] = {}


class FieldsBuiltOnce:
    """Mix into an output serializer (before DRF's class) whose representation depends only
    on the object it renders: every instance renders with the fields of the first one."""

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
