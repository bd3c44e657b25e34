from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "hooks"
    verbose_name = "Hooks"

    def ready(self) -> None:
        # Connect the domain signal to the outbox writer.
        from hooks import receivers  # noqa: F401
