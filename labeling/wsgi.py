import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")
application = get_wsgi_application()
from labeling.db import web_process_begin  # noqa: E402 - needs the settings loaded above

web_process_begin()
# Import every view (and, through /predict's service, the model stack) while the worker boots, so the
# first request (often a health probe with a short timeout) does not pay for it.
_urls = get_resolver().url_patterns
