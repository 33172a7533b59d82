import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")
application = get_asgi_application()

from labeling.db import web_process_begin  # noqa: E402 - needs the settings loaded above

web_process_begin()
