import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")
application = get_wsgi_application()

from labeling.db import web_process_begin  # noqa: E402 - needs the settings loaded above

web_process_begin()
