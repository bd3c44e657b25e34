"""Admin for people who register hooks.

A project's page lists and edits its hooks; a hook's page shows its health and recent
deliveries, with "Send test event", "Re-enable" and "Redeliver all failed since …"; a
delivery's page shows the payload and every attempt's request and response, with "Resend".
Secrets are never rendered back. Deliveries and attempts are read-only: only the delivery
code changes them.

The project page is extended from here (re-registering ``ProjectAdmin`` with a hooks
inline) so that ``pipelines`` never imports ``hooks``.
"""

# Importing the modules registers their admin classes.
from hooks.admin import delivery_admin, hook_admin  # noqa: F401
