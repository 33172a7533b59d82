"""factory_boy factories for every model."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from labeling import models as m


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.org")
    password = factory.django.Password("pw-for-tests")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Project

    name = factory.Sequence(lambda n: f"project {n}")
    labels = factory.LazyFunction(lambda: m.default_label_keys(["fresh", "rotten"]))


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Document

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"A review snippet number {n}.")
    content_hash = factory.LazyAttribute(lambda o: m.text_hash(o.text))


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ModelVersion

    project = factory.SubFactory(ProjectFactory)
    version = factory.Sequence(lambda n: n + 1)
    status = m.ModelStatus.CANDIDATE
    label_map = factory.LazyAttribute(lambda o: o.project.label_names)


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Prediction

    document = factory.SubFactory(DocumentFactory)
    model_version = factory.SubFactory(ModelVersionFactory, project=factory.SelfAttribute("..document.project"))
    probabilities = [0.6, 0.4]
    predicted_label = "fresh"
    confidence = 0.6
    entropy = 0.673
    expected_entropy = 0.6
    mutual_info = 0.073
    margin = 0.2
    acquisition_score = 0.073


class AssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Assignment

    document = factory.SubFactory(DocumentFactory)
    project = factory.SelfAttribute("document.project")
    annotator = factory.SubFactory(UserFactory)
    leased_until = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=10))


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Annotation

    document = factory.SubFactory(DocumentFactory)
    project = factory.SelfAttribute("document.project")
    annotator = factory.SubFactory(UserFactory)
    label = "fresh"


class AnnotationRevisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.AnnotationRevision

    annotation = factory.SubFactory(AnnotationFactory)
    previous_label = "rotten"
    new_label = "fresh"
    changed_by = factory.SelfAttribute("annotation.annotator")


class TrainingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.TrainingRun

    project = factory.SubFactory(ProjectFactory)


class ImportJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ImportJob

    project = factory.SubFactory(ProjectFactory)
    file_path = "/tmp/none.csv"
    file_format = "csv"


def bulk_scored_project(n: int, *, champion_labels: tuple[str, ...] | None) -> tuple[object, object | None]:
    """A project of ``n`` documents (every tenth a holdout one) and, with ``champion_labels``, a champion that
    predicted each of them, cycling through the labels."""
    project = ProjectFactory()
    texts = [f"{project.pk} snippet {i}" for i in range(n)]
    docs = m.Document.objects.bulk_create(
        m.Document(project=project, text=text, content_hash=m.text_hash(text),
                   split=m.Split.HOLDOUT if i % 10 == 9 else m.Split.POOL)
        for i, text in enumerate(texts)
    )
    if champion_labels is None:
        return project, None
    champion = ModelVersionFactory(project=project, status=m.ModelStatus.CHAMPION)
    m.Prediction.objects.bulk_create(
        m.Prediction(document=d, model_version=champion, probabilities=[0.6, 0.4],
                     predicted_label=champion_labels[i % len(champion_labels)], confidence=0.6, entropy=0.67,
                     expected_entropy=0.6, mutual_info=0.01 + (i % 7) * 0.01, margin=0.2, acquisition_score=0.07,
                     map_x=i % 50, map_y=i % 30)
        for i, d in enumerate(docs)
    )
    return project, champion
