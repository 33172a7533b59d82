"""The Celery app, configured from Django settings.

Start a worker with ``celery -A workers.app worker --queues scoring,training`` (CPU) or
``--queues gpu`` on a CUDA host, and beat with ``celery -A workers.app beat``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

app = Celery("alabel")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _configure_embedded_broker() -> None:
    """The demo's server-less broker: kombu's filesystem transport in one shared folder."""
    from django.conf import settings

    if not str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        return
    folder = settings.CELERY_FILESYSTEM_BROKER_DIR
    for sub in ("queue", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
    }


_configure_embedded_broker()
app.autodiscover_tasks(["workers"], related_name="tasks")
