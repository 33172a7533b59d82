"""Worker tests run real Celery workers (tests/support/celery_worker.py) against the test database."""

from tests.support.celery_worker import celery_worker, celery_worker_factory, redis_server  # noqa: F401
from tests.support.fixtures import shared_embedding_cache  # noqa: F401
