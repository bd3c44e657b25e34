"""GitLab's project hooks API: ``/api/v4/projects/:id/hooks``.

``entities`` shows hooks and their log, ``params`` reads what clients send, ``views``
answers; the routes are ``hooks.api_urls``.

Field names, status codes and error bodies follow GitLab (``lib/api/project_hooks.rb``,
``lib/api/entities/project_hook.rb``, ``lib/api/hooks/*``), so GitLab clients
(python-gitlab, Terraform, scripts) manage Pipehook hooks unchanged. Pipehook sends
pipeline hooks only: GitLab's other ``*_events`` flags are accepted and always read false.

Secrets (``token``, ``signing_token``, custom header values) are write-only: responses say
only whether they are set, and the delivery log masks them again on the way out. The URL is
shown with its credentials and secret query values masked (``pipelines.redaction``).
"""
