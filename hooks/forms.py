"""The admin's hook form: secrets are write-only, every rule is the API's (hooks.validators)."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from hooks import limits
from hooks.models import Hook
from hooks.signing import generate_signing_secret
from hooks.validators import (
    SECRET_MASK,
    HookSettingError,
    check_custom_headers,
    check_ref_filter,
    check_secret_token,
    check_signing_token,
    check_status_filter,
    check_url,
)
from pipelines.models import Status
from pipelines.redaction import same_origin

KEEP_PLACEHOLDER = "set — leave blank to keep"


def parse_header_lines(text: str, stored: dict[str, str]) -> dict[str, str]:
    """``Name: value`` per line; a value left as the mask keeps the stored one."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise HookSettingError(
                "custom_headers", f"line {number}: write each header as 'Name: value'"
            )
        if value == SECRET_MASK:
            if name not in stored:
                raise HookSettingError(
                    "custom_headers", f"line {number}: {name} has no stored value; enter one"
                )
            value = stored[name]
        headers[name] = value
    return check_custom_headers(headers)


class HookForm(forms.ModelForm):
    """Add or edit a hook. Stored secrets are never rendered back, only said to be set."""

    token = forms.CharField(
        label="Secret token",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as X-Gitlab-Token with every request.",
    )
    remove_token = forms.BooleanField(label="Remove the secret token", required=False)
    signing_token = forms.CharField(
        label="Signing secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Standard Webhooks secret (whsec_ + base64). Requests then carry "
        "webhook-id, webhook-timestamp and webhook-signature.",
    )
    generate_signing_token = forms.BooleanField(
        label="Generate a new signing secret (shown once after saving)", required=False
    )
    remove_signing_token = forms.BooleanField(label="Remove the signing secret", required=False)
    custom_headers = forms.CharField(
        label="Custom headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "spellcheck": "false"}),
        help_text=f"One per line, 'Name: value'. Stored values show as {SECRET_MASK}; "
        "leave them so to keep them. Delivery headers cannot be replaced.",
    )
    status_filter = forms.MultipleChoiceField(
        label="Only these pipeline statuses",
        required=False,
        choices=Status.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every status change is sent.",
    )

    class Meta:
        model = Hook
        fields = (
            "project",
            "name",
            "url",
            "description",
            "pipeline_events",
            "job_events",
            "ref_filter_strategy",
            "ref_filter",
            "status_filter",
            "enable_ssl_verification",
            "token",
            "signing_token",
            "custom_headers",
        )
        widgets = {
            "url": forms.URLInput(attrs={"size": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generated_signing_token: str | None = None
        stored = self.instance
        for name in ("token", "signing_token"):
            if name in self.fields and getattr(stored, name, ""):
                self.fields[name].widget.attrs["placeholder"] = KEEP_PLACEHOLDER
        if "custom_headers" in self.fields:
            headers = stored.custom_headers or {}
            self.initial["custom_headers"] = "\n".join(f"{name}: {SECRET_MASK}" for name in headers)
        if "status_filter" in self.fields:
            self.initial["status_filter"] = list(stored.status_filter or [])
        if "url" in self.fields and stored.pk:
            # Credentials are shown masked; saved unchanged, the stored ones are kept.
            self.initial["url"] = stored.redacted_url

    def clean_url(self) -> str:
        stored = self.instance.url if self.instance.pk else ""
        return self._checked(check_url, self.cleaned_data["url"], stored)

    def clean_token(self) -> str:
        return self._checked(check_secret_token, self.cleaned_data["token"])

    def clean_signing_token(self) -> str:
        value = self.cleaned_data["signing_token"].strip()
        return self._checked(check_signing_token, value) if value else ""

    def moves_to_another_receiver(self) -> bool:
        """Whether the edit points the hook at another scheme or host, whose requests then
        carry none of the stored secrets (GitLab's reset_token / reset_custom_headers)."""
        url = self.cleaned_data.get("url")
        return bool(self.instance.pk and url and not same_origin(url, self.instance.url))

    def clean_custom_headers(self) -> dict[str, str]:
        text = self.cleaned_data["custom_headers"]
        if self.moves_to_another_receiver():
            if SECRET_MASK in text:
                raise forms.ValidationError(
                    "The URL now points to another receiver, which does not get the stored"
                    " header values: enter them again, or remove their lines."
                )
            return self._checked(parse_header_lines, text, {})
        stored = self.instance.custom_headers or {}
        return self._checked(parse_header_lines, text, stored)

    def clean_status_filter(self) -> list[str]:
        return self._checked(check_status_filter, self.cleaned_data["status_filter"])

    def clean(self) -> dict:
        data = super().clean()
        stored = self.instance
        # A blank secret field means "keep what is stored"; the tick boxes remove or replace.
        if "token" in data:
            if data.get("remove_token"):
                data["token"] = ""
            elif not data["token"]:
                data["token"] = "" if self.moves_to_another_receiver() else stored.token
        if "signing_token" in data:
            if data.get("generate_signing_token"):
                self.generated_signing_token = generate_signing_secret()
                data["signing_token"] = self.generated_signing_token
            elif data.get("remove_signing_token"):
                data["signing_token"] = ""
            elif not data["signing_token"]:
                data["signing_token"] = stored.signing_token
        strategy = data.get("ref_filter_strategy", stored.ref_filter_strategy)
        try:
            data["ref_filter"] = check_ref_filter(strategy, data.get("ref_filter") or "")
        except HookSettingError as problem:
            self.add_error("ref_filter", problem.message)
        # On the hook's own page; the project page counts its whole list (HookFormSet).
        project = data.get("project")
        if "project" in self.fields and project and project.pk != stored.project_id:
            try:
                limits.check_room_for_hooks(project.pk)
            except limits.HookLimitReached as full:
                raise forms.ValidationError(full.message) from None
        return data

    def save(self, commit: bool = True) -> Hook:
        # Django leaves a field that has a default alone when the browser sent no input for
        # it at all; the secrets' decided values (kept, removed, or dropped because the hook
        # now points elsewhere) are what counts.
        for name in ("token", "signing_token"):
            if name in self.cleaned_data:
                setattr(self.instance, name, self.cleaned_data[name])
        return super().save(commit)

    def _checked(self, check, *args):
        try:
            return check(*args)
        except HookSettingError as problem:
            raise forms.ValidationError(problem.message) from None


class HookFormSet(forms.BaseInlineFormSet):
    """A project's hooks on its page: the hooks it keeps and adds must fit its limit."""

    def clean(self) -> None:
        super().clean()
        added = sum(
            1
            for form in self.extra_forms
            if form.has_changed() and not self._should_delete_form(form)
        )
        removed = sum(1 for form in self.initial_forms if self._should_delete_form(form))
        try:
            limits.check_room_for_hooks(self.instance.pk, adding=added - removed)
        except limits.HookLimitReached as full:
            raise forms.ValidationError(full.message) from None


class RedeliverForm(forms.Form):
    since = forms.DateTimeField(
        label="Failed deliveries created since",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=[
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ],
        help_text="In UTC.",
    )

    def clean_since(self):
        since = self.cleaned_data["since"]
        if since > timezone.now():
            raise forms.ValidationError("This time is in the future.")
        return since
