"""Authentication under attack: token guessing is throttled, the client address cannot be forged,
tokens are hashed, expire and rotate per client, logins lock out, passwords are checked."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import ApiToken
from labeling.services.tokens import token_create, token_digest
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "1000/min", "user": "1000/min", "auth_failures": "20/min", **rates},
    }


def test_300_wrong_tokens_meet_429_after_the_limit(settings, project):
    rates(settings)
    client = APIClient()
    codes = []
    for i in range(300):
        client.credentials(HTTP_AUTHORIZATION=f"Token guess{i:040d}")
        codes.append(client.get(f"/api/v1/projects/{project.pk}/documents/").status_code)
    assert codes[:20] == [401] * 20
    assert set(codes[20:]) == {429}
    response = client.get("/api/v1/projects/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    # A caller with a good token from the same address is not locked out by someone else's guessing.
    user = UserFactory()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[1]}")
    assert client.get("/api/v1/projects/").status_code == 200


def test_a_wrong_token_on_the_schema_is_counted_too(settings):
    rates(settings, auth_failures="2/min")
    client = APIClient(HTTP_AUTHORIZATION="Token nope")
    assert [client.get("/api/v1/schema/").status_code for _ in range(3)] == [401, 401, 429]


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(settings):
    rates(settings, anon="3/min")
    settings.TRUSTED_PROXIES = []
    client = APIClient()
    codes = [client.get("/api/v1/projects/", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]  # a new X-Forwarded-For each time does not reset the count


def test_a_trusted_proxy_forwards_the_real_client_address(settings):
    rates(settings, anon="2/min")
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    client = APIClient()  # the test client's peer is 127.0.0.1
    first = [client.get("/api/v1/projects/", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code for _ in range(3)]
    other = client.get("/api/v1/projects/", HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.2").status_code
    # The client prepended a fake hop: the proxy-appended one (rightmost untrusted) is what counts.
    forged = client.get("/api/v1/projects/", HTTP_X_FORWARDED_FOR="198.51.100.9, 203.0.113.7").status_code
    assert (first, other, forged) == ([401, 401, 429], 401, 429)


def test_tokens_are_stored_as_digests_and_work_in_one_query(django_assert_max_num_queries):
    user = UserFactory()
    row, key = token_create(user=user, client="etl")
    assert row.digest == token_digest(key) and key not in {row.digest, row.token_key}
    with connection.cursor() as cursor:
        cursor.execute("SELECT digest, token_key FROM labeling_apitoken")
        assert all(key not in value for values in cursor.fetchall() for value in values)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    with django_assert_max_num_queries(2):  # the token (with the role subqueries) and the projects
        assert client.get("/api/v1/projects/").status_code == 200


def test_tokens_expire(settings):
    user = UserFactory()
    row, key = token_create(user=user, ttl_days=1)
    ApiToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - timezone.timedelta(seconds=1))
    response = APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/projects/")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_rotating_one_clients_token_leaves_the_others_working():
    user = UserFactory()
    _, etl_old = token_create(user=user, client="etl")
    _, ci = token_create(user=user, client="ci")
    _, etl_new = token_create(user=user, client="etl")
    status = {k: APIClient(HTTP_AUTHORIZATION=f"Token {k}").get("/api/v1/projects/").status_code
              for k in (etl_old, ci, etl_new)}
    assert status == {etl_old: 401, ci: 200, etl_new: 200}


def test_token_commands_print_a_working_key_and_revoke_it(capsys):
    user = UserFactory(username="scripted")
    call_command("drf_create_token", "scripted")
    key = capsys.readouterr().out.split()[2]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/projects/").status_code == 200
    call_command("token_revoke", "scripted")
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/projects/").status_code == 401
    assert not ApiToken.objects.filter(user=user).exists()


def test_a_plain_pre_upgrade_key_keeps_working_after_the_migration_hashes_it():
    import importlib

    migration = importlib.import_module("labeling.migrations.0011_hash_plain_api_tokens")
    user = UserFactory()
    plain = "0123456789abcdef0123456789abcdef01234567"  # DRF's 40-character keys
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz,"
                       " user_id bigint)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [plain, user.pk])

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection  # type: ignore[attr-defined]
    from django.apps import apps

    migration.hash_plain_tokens(apps, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0  # no plain key left behind
    row = ApiToken.objects.get(user=user)
    assert row.client == "legacy" and row.expiry is not None
    assert APIClient(HTTP_AUTHORIZATION=f"Token {plain}").get("/api/v1/projects/").status_code == 200


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_logins_lock_out_after_five_failures_for_that_user_and_address(path, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    UserFactory(username="target", password="correct horse battery", is_staff=True)
    client = Client()
    for _ in range(5):
        client.post(path, {"username": "target", "password": "wrong"})
    locked = client.post(path, {"username": "target", "password": "correct horse battery"})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    call_command("axes_reset", verbosity=0)
    assert client.post(path, {"username": "target", "password": "correct horse battery"}).status_code == 302


@pytest.mark.parametrize("password", ["password123", "1234567890123", "short1!", "targetuser1"])
def test_weak_passwords_are_refused(password):
    user = UserFactory.build(username="targetuser1", email="t@example.com")
    with pytest.raises(ValidationError):
        validate_password(password, user)
    validate_password("a long and unusual phrase", user)
