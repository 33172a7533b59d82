"""The labeling service: Django project and app in one package."""
