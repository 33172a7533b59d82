from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from labeling.db import connect_signals

        connect_signals()
        # Make the service's Celery app the current one, so services can send tasks by name.
        import workers.app  # noqa: F401
