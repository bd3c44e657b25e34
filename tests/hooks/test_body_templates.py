"""E3: GitLab's custom webhook templates, rendered as WebHookService#render_custom_template
does (with custom_webhook_template_serialization), with no database."""

import json

import pytest

from hooks.body_templates import ARRAY_ACCESS, ERROR_PREFIX, TemplateError, body_to_send, render

PAYLOAD = json.dumps(
    {
        "object_kind": "pipeline",
        "object_attributes": {"id": 7, "status": "failed", "duration": 12, "tag": False},
        "project": {"name": 'Web "app" <1>\\', "namespace": None},
        "builds": [{"id": 1, "name": "test"}],
        "user": {"name": "Ana"},
    }
)


def test_e3_dotted_paths_fill_in_json_escaped_strings_and_literal_values():
    template = (
        '{"text": "{{project.name}} #{{object_attributes.id}}: {{object_attributes.status}}",'
        ' "id": {{object_attributes.id}}, "tag": {{object_attributes.tag}},'
        ' "missing": {{object_attributes.nope}}, "deeper": {{project.namespace.name}}}'
    )
    body = render(template, PAYLOAD)
    assert json.loads(body) == {
        "text": 'Web "app" <1>\\ #7: failed',
        "id": 7,
        "tag": False,
        "missing": None,
        "deeper": None,
    }
    # Written again as the payload is (Rails' escaping, template key order).
    assert body.startswith('{"text":"Web \\"app\\" \\u003c1\\u003e\\\\ #7: failed","id":7')


def test_e3_an_object_or_array_is_written_as_its_json():
    body = render('{"jobs": {{builds}}, "who": {{user}}}', PAYLOAD)
    assert json.loads(body) == {"jobs": [{"id": 1, "name": "test"}], "who": {"name": "Ana"}}


@pytest.mark.parametrize("path", ["builds.0.id", "builds.id", "user.name.first"])
def test_e3_no_array_indexing_nor_stepping_into_a_value(path):
    with pytest.raises(TemplateError) as failed:
        render(f'{{"x": "{{{{{path}}}}}"}}', PAYLOAD)
    assert failed.value.message == ERROR_PREFIX + ARRAY_ACCESS


def test_e3_a_rendering_that_is_not_json_says_so_in_gitlabs_words():
    with pytest.raises(TemplateError) as failed:
        render('{"status": {{object_attributes.status}}}', PAYLOAD)  # unquoted string
    assert failed.value.message.startswith("Error while parsing rendered custom webhook template: ")


def test_e3_placeholders_are_not_trimmed_and_no_template_sends_the_payload():
    assert json.loads(render('{"a": {{ user.name }}}', PAYLOAD)) == {"a": None}
    assert body_to_send("", PAYLOAD) == PAYLOAD
