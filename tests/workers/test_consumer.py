"""The worker's consumer survives closing a broker connection that kombu can no longer close.

The state is the one a real worker reaches when its Redis broker is killed while an acked-late task
runs (workers/consumer.py): the default channel still open with a delivered, unacknowledged
message, its client pools dropped by the failed read, and the transport detached by ``collect()``.
"""

from __future__ import annotations

import pytest
from celery.utils.imports import symbol_by_name
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection, Queue

from tests.support.celery_worker import RedisServer
from workers.app import app
from workers.consumer import Consumer, tolerate_detached_close


def _connection_lost_with_a_message_unacknowledged(redis_server: RedisServer) -> Connection:
    connection = Connection(redis_server.url)
    queue = Queue("scoring")
    with connection.Producer() as producer:
        producer.publish({"document": 1}, routing_key="scoring", declare=[queue])
    delivered = []
    consumer = connection.Consumer([queue], callbacks=[lambda body, message: delivered.append(message)])
    consumer.consume()
    connection.drain_events(timeout=5)
    channel = connection.default_channel
    assert len(delivered) == 1 and len(channel.qos._delivered) == 1  # in hand, not acknowledged
    redis_server.stop()
    channel._disconnect_pools()  # what the failed read did
    connection._do_close_transport()  # what collect() did after its own close was cut short
    return connection


def test_kombu_cannot_close_such_a_connection(redis_server: RedisServer) -> None:
    # The upstream error the consumer works around; once kombu closes this cleanly, the workaround can go.
    connection = _connection_lost_with_a_message_unacknowledged(redis_server)
    with pytest.raises(AttributeError):
        connection.close()


def test_the_consumer_closes_it_with_a_warning_instead_of_exiting(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = _connection_lost_with_a_message_unacknowledged(redis_server)
    tolerate_detached_close(connection)
    connection.close()
    connection.release()
    assert "delivered again after the visibility timeout" in caplog.text


def test_the_worker_runs_that_consumer() -> None:
    consumer_cls = symbol_by_name(app.conf.worker_consumer)
    assert consumer_cls is Consumer and issubclass(consumer_cls, CeleryConsumer)
