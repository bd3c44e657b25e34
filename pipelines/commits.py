"""What GitLab derives from a commit's message; pure, for the models, payloads and dialects."""

import re


def commit_title(message: str) -> str:
    """GitLab's ``Commit#title``: the first line of the message ("No commit message" when it
    is blank); from 100 characters on, Rails' ``truncate(81, separator: " ", omission: "…")``
    of it."""
    if not message.strip():
        return "No commit message"
    first_line = re.split(r"[\r\n]", message, maxsplit=1)[0]
    if len(first_line) < 100:
        return first_line
    space = first_line.rfind(" ", 0, 81)
    return first_line[: space if space != -1 else 80] + "…"
