"""GitLab's custom webhook templates: the body a hook sends when it has one.

A template is JSON text with ``{{path.to.field}}`` placeholders (``WebHookService#
render_custom_template``, with the ``custom_webhook_template_serialization`` behaviour):

- a path is split on dots and looked up in the payload key by key (Ruby's ``Hash#dig``), with
  no trimming; a missing key is ``null``; stepping into an array, a string or a number is an
  error (no array indexing: ``{{builds.0.id}}`` fails);
- a string value is written JSON-escaped without its quotes (the template writes them:
  ``"{{project.name}}"``); a number, boolean or null as JSON; an object or array as its whole
  JSON (``"jobs": {{builds}}``);
- the result must be JSON: it is parsed and written again as the payload is, so the body sent
  (and signed) is normalized JSON in the template's key order.

Errors carry GitLab's words; the delivery log keeps them as the attempt's error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hooks.payloads import dump_payload

MAX_TEMPLATE_LENGTH = 4096  # GitLab: validates :custom_webhook_template, length: { maximum: 4096 }
PLACEHOLDER = re.compile(r"{{(.+?)}}", re.DOTALL)
ERROR_PREFIX = "Error while parsing rendered custom webhook template: "
ARRAY_ACCESS = "You may be trying to access an array value, which is not supported."


class TemplateError(ValueError):
    """The template did not render to JSON; ``message`` is GitLab's text."""

    def __init__(self, problem: str):
        self.message = ERROR_PREFIX + problem
        super().__init__(self.message)


class _NotDiggable(Exception):
    pass


def _dig(payload: Any, path: str) -> Any:
    value = payload
    for key in path.split("."):
        if value is None:
            return None  # Hash#dig stops at nil
        if not isinstance(value, dict):
            raise _NotDiggable
        value = value.get(key)
    return value


def _as_text(value: Any) -> str:
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return encoded[1:-1] if isinstance(value, str) else encoded


def render(template: str, body: str) -> str:
    """The body ``template`` makes of the payload ``body`` (JSON text); raises
    ``TemplateError``."""
    payload = json.loads(body)
    try:
        rendered = PLACEHOLDER.sub(lambda match: _as_text(_dig(payload, match.group(1))), template)
    except _NotDiggable:
        raise TemplateError(ARRAY_ACCESS) from None
    try:
        parsed = json.loads(rendered)
    except ValueError as invalid:
        raise TemplateError(str(invalid)) from None
    return dump_payload(parsed)


def body_to_send(template: str, body: str) -> str:
    """The body a hook with ``template`` (empty: none) sends for the payload ``body``."""
    return render(template, body) if template else body
