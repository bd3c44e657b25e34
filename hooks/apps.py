from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "hooks"
    verbose_name = "Hooks"

    def ready(self) -> None:
        # Connect the domain signal to the outbox writer, and register the tasks that
        # hooks.queue names (it never imports the worker's code).
        from hooks import receivers, tasks  # noqa: F401
