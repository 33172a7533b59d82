"""A real OpenID Connect provider for the tests: django-oauth-toolkit in a process of its own.

``python -m tests.support.oidc_provider.serve`` (started by tests.support.oidc) migrates its own
SQLite file, generates an RSA signing key, creates the users and one confidential client, listens on a
free port and prints it. Its users' claims are read from a JSON file at every request, so a test can
change them between two logins. Nothing here imports alabel's settings.
"""
