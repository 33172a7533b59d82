"""The service's data: projects, documents, annotations, leases, models, predictions, runs.

Rules that must hold under concurrency live in the database as constraints; the rest of the logic
lives in ``labeling.services`` (writes) and ``labeling.selectors`` (reads). No signals.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, get_args

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from knox.models import AbstractAuthToken

from labeling.labelspace import TASK_TYPE_LABELS, LabelSpace, label_space_for_project
from modelsvc import acquisition
from modelsvc.config import Features, fine_tune_top

LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
KEY_RE = re.compile(r"^[1-9a-z]$")
#: Room for a stored answer: one label name, or a multi-label set (up to 35 labels, one per key) as its
#: names joined by ``labelspace.SET_SEPARATOR``. A varchar limit, not padding: short answers stay short.
ANSWER_MAX_LENGTH = 35 * 64 + 34
#: Keys the labeling and review pages keep for themselves, so no label may take them: a page key
#: pressed first would leave that label unreachable by keyboard. The review page's comment key is
#: chosen per project instead (``COMMENT_KEYS``: "c", or "0" where a label took "c").
PAGE_KEYS = {"skip": "s", "undo": "u"}
RESERVED_KEYS = frozenset(PAGE_KEYS.values())
COMMENT_KEYS = ("c", "0")  # "0" is never a label key (KEY_RE)
#: The labeling page's key for "accept the suggestion" (an imported pre-annotation): never a label's key (KEY_RE).
ACCEPT_SUGGESTION_KEY = "0"


def text_hash(text: str) -> str:
    """Content hash used to detect exact duplicate texts (and to key the encoder cache)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The acquisition strategies a project may use, derived from modelsvc's registry (declared there once):
#: ``AcquisitionStrategy.DIVERSE == "diverse"``, labels as registered.
AcquisitionStrategy = models.TextChoices(
    "AcquisitionStrategy", [(s.name.upper(), (s.name, s.label)) for s in acquisition.REGISTRY.values()]
)


# Declared once, in the label-space registry: a task type and its label handling come together.
TaskType = models.TextChoices(  # type: ignore[misc]
    "TaskType", [(value.upper(), (value, text)) for value, text in TASK_TYPE_LABELS.items()]
)


#: The fast tier's input choices (``Project.model_features``), declared once in modelsvc.
MODEL_FEATURES: tuple[str, ...] = get_args(Features)


def validate_deep_tier(value: str) -> None:
    """``topN`` (N >= 1) or ``full``: a deep run moves the encoder, so ``frozen`` is refused."""
    validate_fine_tune(value)
    if value == "frozen":
        raise ValidationError("a deep tier tunes the encoder: topN (e.g. top2) or full, not frozen")


def validate_fine_tune(value: str) -> None:
    """``frozen``, ``full`` or ``topN`` (N >= 1): ``modelsvc.config.fine_tune_top``'s rule."""
    try:
        fine_tune_top(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def validate_label_set(value: Any) -> None:
    """An ordered list of {name, text, key}: 2+ labels, unique names and keys."""
    if not isinstance(value, list) or len(value) < 2:
        raise ValidationError("labels must be a list of at least 2 labels")
    names: set[str] = set()
    keys: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValidationError(f"labels[{i}] must be an object with a string 'name'")
        name = item["name"]
        if not LABEL_NAME_RE.match(name):
            raise ValidationError(f"labels[{i}].name {name!r} must be 1-64 letters, digits or _.:-")
        if name in names:
            raise ValidationError(f"labels[{i}].name {name!r} is repeated")
        names.add(name)
        key = item.get("key", "")
        if key:
            if not isinstance(key, str) or not KEY_RE.match(key) or key in RESERVED_KEYS:
                reserved = " or ".join(sorted(RESERVED_KEYS))
                raise ValidationError(f"labels[{i}].key {key!r} must be one of 1-9 or a-z, not {reserved} (page keys)")
            if key in keys:
                raise ValidationError(f"labels[{i}].key {key!r} is repeated")
            keys.add(key)
        text = item.get("text", name)
        if not isinstance(text, str) or not (1 <= len(text) <= 200):
            raise ValidationError(f"labels[{i}].text must be 1-200 characters")


def default_label_keys(names: list[str]) -> list[dict[str, str]]:
    """Label-set entries for plain names, keyed 1..9 then free letters."""
    free = [str(d) for d in range(1, 10)] + [c for c in "abcdefghijklmnopqrtvwxyz"]
    return [{"name": n, "text": n, "key": free[i] if i < len(free) else ""} for i, n in enumerate(names)]


class OverlapScope(models.TextChoices):
    """Which documents need ``Project.overlap`` annotators (the rest need one)."""

    ALL = "all", "Every document"
    HOLDOUT = "holdout", "The blind holdout"
    SHARE = "share", "A seeded share of the pool"


MAX_OVERLAP = 5
#: The share of a run's training labels the label-noise loop sends to review: a project's default, and
#: the most it may ask for (past half, the "likely wrong" ranking is mostly right labels).
NOISE_REVIEW_SHARE = 0.10
MAX_NOISE_REVIEW_SHARE = 0.5


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    labels = models.JSONField(validators=[validate_label_set], help_text="ordered [{name, text, key}]")
    # Which version of the label set ``labels`` is: 1 at creation, +1 per add / rename / retire / merge /
    # split (``labeling.services.labelset``); each version's labels are kept in ``LabelSetVersion``.
    label_set_version = models.PositiveIntegerField(default=1)
    task_type = models.CharField(max_length=32, choices=TaskType.choices, default=TaskType.SINGLE_LABEL)
    # --- active-learning policy ---
    acquisition_strategy = models.CharField(
        max_length=32, choices=AcquisitionStrategy.choices, default=AcquisitionStrategy.DIVERSE
    )
    retrain_after = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)], help_text="retrain after this many new labels"
    )
    holdout_fraction = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="share of incoming documents reserved for honest evaluation",
    )
    holdout_interleave = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="share of queue items served from the holdout (labeled blind)",
    )
    random_share = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="share of pool leases drawn at random instead of by the strategy once a model exists; "
        "their labels train the model and, as random draws, join the holdout in the temperature fit",
    )
    lease_minutes = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    auto_accept_threshold = models.FloatField(default=0.95, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    review_threshold = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="calibrated confidence below this is escalated",
    )
    promotion_tolerance = models.FloatField(
        default=0.01,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="a challenger may be at most this much worse than the champion on the holdout",
    )
    fine_tune = models.CharField(
        max_length=16,
        default="frozen",
        validators=[validate_fine_tune],
        help_text="frozen (only the head trains, from cached vectors), topN (the top N encoder layers "
        "train with it, e.g. top2) or full; see docs/MODELSVC.md",
    )
    model_features = models.CharField(
        max_length=16,
        choices=[(name, name) for name in MODEL_FEATURES],
        default="embedding",
        help_text="the fast tier's input: embedding (the encoder's vector), hybrid (with a TF-IDF block "
        "fitted on the pool) or sparse (a logistic regression on that TF-IDF beside the head); see docs/MODELSVC.md",
    )
    # --- two training tiers (labeling.services.training.tiers) ---
    deep_tier_every = models.PositiveIntegerField(
        default=0,
        help_text="0: off (every run trains as fine_tune says). N: a run whose label count crossed the next "
        "multiple of N since the last deep run fine-tunes the encoder (deep_tier); every other run trains the "
        "head on the champion's encoder (fast)",
    )
    deep_tier = models.CharField(
        max_length=16,
        default="top2",
        validators=[validate_deep_tier],
        help_text="what a deep run tunes: topN (e.g. top2) or full",
    )
    deep_tier_budget_s = models.PositiveIntegerField(
        default=1800,
        validators=[MinValueValidator(60), MaxValueValidator(3000)],
        help_text="seconds a deep run may spend tuning; then it stops and keeps its best epoch so far",
    )
    seed = models.PositiveIntegerField(default=0, help_text="seeds the holdout draw and training")
    # --- team policy: overlap, consensus, review ---
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_OVERLAP)],
        help_text="how many annotators label a document that gets overlap (1-5)",
    )
    overlap_scope = models.CharField(
        max_length=8, choices=OverlapScope.choices, default=OverlapScope.ALL,
        help_text="which documents get overlap: all, the holdout, or a seeded share of the pool",
    )
    overlap_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="with overlap_scope=share: the share of pool documents that get overlap",
    )
    min_agreement = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="consensus needs the top label's share of a document's labels to reach this (a tie never does)",
    )
    review_audit_share = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="share of single-labeled documents sent to review as a random audit",
    )
    # Kept by services/webhooks.py: a label commits without a webhook query when it is False.
    webhooks_active = models.BooleanField(default=False, editable=False)
    # --- guidelines: Markdown source, rendered and sanitised on read (labeling.services.guidelines) ---
    guidelines = models.TextField(blank=True, default="", help_text="the labeling guidelines (Markdown)")
    label_guidelines = models.JSONField(
        default=dict, blank=True, help_text="{label name: Markdown}: what each label means, with examples"
    )
    noise_review_share = models.FloatField(
        default=NOISE_REVIEW_SHARE,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_NOISE_REVIEW_SHARE)],
        help_text="share of each run's training labels the label-noise loop sends to review, most suspect "
        "first (0 turns the loop off); with noise_hold_flagged they stop training until a reviewer decides them",
    )
    noise_hold_flagged = models.BooleanField(
        default=False,
        help_text="a label the label-noise loop flagged stops training until a reviewer decides it (off: it "
        "keeps training until then; measured not to help, docs/REPLAY.md)",
    )
    # Kept by services/coldstart.py: how the pre-model queue order was chosen ({method, pool token,
    # ranked, computed_at}); empty until the first ingest is ordered.
    cold_start = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        validate_label_set(self.labels)
        if self.review_threshold > self.auto_accept_threshold:
            raise ValidationError({"review_threshold": "must not exceed auto_accept_threshold"})

    @property
    def label_space(self) -> LabelSpace:
        """How this project's labels map to indices, model outputs and exports (``labeling.labelspace``)."""
        return label_space_for_project(self)

    @property
    def label_names(self) -> list[str]:
        return list(self.label_space.names)


class Split(models.TextChoices):
    POOL = "pool", "Pool"
    HOLDOUT = "holdout", "Holdout"


class Document(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=255, null=True, blank=True)
    text = models.TextField()
    content_hash = models.CharField(max_length=64, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.POOL)
    # Gold labels from an imported file: for replay and evaluation only, never shown or trained on.
    gold_label = models.CharField(max_length=ANSWER_MAX_LENGTH, null=True, blank=True)
    # An external model's prediction brought with an import (a pre-annotation): shown on the labeling
    # page as a suggestion, never trained on (an annotator who accepts it gives that label themselves).
    suggested_label = models.CharField(max_length=ANSWER_MAX_LENGTH, blank=True)
    suggested_score = models.FloatField(null=True, blank=True)
    # How many annotators label it: the project's overlap policy, applied on creation and on a policy change.
    labels_required = models.PositiveSmallIntegerField(default=1)
    # "Has all its labels": denormalised by the annotation service in the same transaction (labels
    # >= labels_required), so the queue query stays an index scan.
    is_labeled = models.BooleanField(default=False)
    # The pre-model queue order (services/coldstart.py): 1 = label first; null = not chosen (served in
    # the seeded random order after the ranked ones).
    cold_start_rank = models.PositiveIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=Q(external_id__isnull=False),
                name="unique_external_id_per_project",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "content_hash"], name="doc_project_hash"),
            models.Index(fields=["project", "split", "is_labeled"], name="doc_project_split_labeled"),
            models.Index(
                fields=["project", "cold_start_rank"],
                condition=Q(cold_start_rank__isnull=False, is_labeled=False),
                name="doc_cold_start_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.external_id or self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.content_hash:
            self.content_hash = text_hash(self.text)
        super().save(*args, **kwargs)


class AnnotationSource(models.TextChoices):
    UI = "ui", "Web UI"
    API = "api", "API"
    IMPORT = "import", "Import"


class Annotation(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="annotations")
    # The document's project, copied on save (a document never changes project): a project's annotation
    # reads (dashboard, stats, export, agreement) are index ranges over its own labels instead of a join
    # to every document of the table. On PostgreSQL a trigger (migration 0033) fills it on an insert
    # that has none (bulk imports, scripts) and refuses one naming another project than the document's.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", editable=False, db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    label = models.CharField(max_length=ANSWER_MAX_LENGTH)
    assignment = models.ForeignKey(
        "Assignment", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    # What the champion said when the label was given (for export and audits).
    model_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    predicted_label = models.CharField(max_length=ANSWER_MAX_LENGTH, blank=True)
    predicted_confidence = models.FloatField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    source = models.CharField(max_length=8, choices=AnnotationSource.choices, default=AnnotationSource.API)
    # The project's label-set version the label was given under; an insert without one gets the project's
    # current version from a trigger (migration 0021), whatever path stores it (bulk imports included).
    label_set_version = models.PositiveIntegerField(null=True, blank=True)
    # An imported training label: the job that brought it and the row's own source column, if any.
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    import_source = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["document", "annotator"], name="one_annotation_per_document_annotator"),
        ]
        indexes = [
            models.Index(fields=["annotator", "created_at"], name="annotation_annotator_time"),
            # The metrics' labels of the last hour, across projects, read as an index range.
            models.Index(fields=["created_at"], name="annotation_created"),
            # A project's labels (counts, today's and the last 24 h's) as one index range, and the export's
            # walk in id order (a cursor's plan otherwise walks every project's labels by primary key).
            models.Index(fields=["project", "created_at"], name="annotation_project_time"),
            models.Index(fields=["project", "id"], name="annotation_project_order"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}={self.label} by {self.annotator_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.project_id is None:
            self.project_id = self.document.project_id
        super().save(*args, **kwargs)


class AnnotationRevision(models.Model):
    """Audit trail: one row each time an annotator changes a label they gave earlier."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="revisions")
    previous_label = models.CharField(max_length=ANSWER_MAX_LENGTH)
    new_label = models.CharField(max_length=ANSWER_MAX_LENGTH)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class AssignmentState(models.TextChoices):
    ACTIVE = "active", "Active"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Assignment(models.Model):
    """A lease of one document to one annotator."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="assignments")
    # The document's project, copied on save (a document never changes project): the queue counts and
    # finds an annotator's leases in a project from one index, without joining documents.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", editable=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=8, choices=AssignmentState.choices, default=AssignmentState.ACTIVE)
    # Which of the document's ``labels_required`` places this lease holds (0 without overlap).
    slot = models.PositiveSmallIntegerField(default=0)
    leased_until = models.DateTimeField()
    # Why the queue chose it: {"strategy", "score", "holdout", "model_version"}.
    reason = models.JSONField(default=dict, blank=True)
    # Under a stochastic strategy (``modelsvc.acquisition``, ``Strategy.power``): the probability with
    # which the queue's draw picked this document, and how many documents were in the draw. The label's
    # importance weight in the temperature fit is 1 / (pool size x probability); empty otherwise.
    selection_probability = models.FloatField(null=True, blank=True)
    selection_pool_size = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A live or labeled lease holds its place: a document never has more leases and labels
            # than places, whatever races (the queue inserts with ON CONFLICT DO NOTHING).
            models.UniqueConstraint(
                fields=["document", "slot"],
                condition=Q(state__in=["active", "done"]),
                name="one_live_assignment_per_document_slot",
            ),
            models.UniqueConstraint(
                fields=["document", "annotator"],
                condition=Q(state="active"),
                name="one_active_assignment_per_document_annotator",
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "state"], name="assignment_annotator_state"),
            models.Index(fields=["state", "leased_until"], name="assignment_state_lease"),
            models.Index(fields=["project", "annotator", "state"], name="assignment_project_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}->{self.annotator_id} ({self.state})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.project_id is None:
            self.project_id = self.document.project_id
        super().save(*args, **kwargs)

    @property
    def is_expired(self) -> bool:
        return self.state == AssignmentState.ACTIVE and self.leased_until <= timezone.now()


class ModelStatus(models.TextChoices):
    TRAINING = "training", "Training"
    CANDIDATE = "candidate", "Candidate"
    CHAMPION = "champion", "Champion"
    REJECTED = "rejected", "Rejected"
    RETIRED = "retired", "Retired"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.TRAINING)
    artifact_path = models.CharField(max_length=500, blank=True)
    artifact_digest = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the artifact's files when saved; loading checks it"
    )
    encoder_name = models.CharField(max_length=500, blank=True)
    label_map = models.JSONField(default=list, blank=True, help_text="label names in output order")
    train_label_count = models.PositiveIntegerField(default=0)
    # accuracy, macro_f1, ece, ece_uncalibrated, nll, brier, auroc_error, holdout_count, reliability ...
    metrics = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(default=dict, blank=True)
    thresholds = models.JSONField(
        null=True,
        blank=True,
        help_text="multi-label only: per-label probability thresholds in label_map order (out-of-fold max F1)",
    )
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="unique_model_version_number"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(status="champion"), name="one_champion_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.version} ({self.status})"


#: The columns a scoring pass writes (and the queue reads back with its ranking).
PREDICTION_SCORE_FIELDS = (
    "probabilities",
    "predicted_label",
    "confidence",
    "entropy",
    "expected_entropy",
    "mutual_info",
    "margin",
    "acquisition_score",
    "map_x",
    "map_y",
)


class Prediction(models.Model):
    # No index of its own: the unique (document, model_version) index starts with it, and a fifth index
    # per row was a share of every scoring write (docs/BENCHMARKS.md).
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="predictions", db_index=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    probabilities = models.JSONField(help_text="calibrated mean probabilities, in label_map order")
    predicted_label = models.CharField(max_length=ANSWER_MAX_LENGTH)
    confidence = models.FloatField(help_text="calibrated probability of the predicted label")
    entropy = models.FloatField(help_text="predictive entropy (total uncertainty), nats")
    expected_entropy = models.FloatField(help_text="mean entropy of the samples (aleatoric), nats")
    mutual_info = models.FloatField(help_text="entropy - expected_entropy: BALD (epistemic), nats")
    margin = models.FloatField(help_text="top-1 minus top-2 probability")
    acquisition_score = models.FloatField(help_text="the project's strategy; higher = ask sooner")
    # 2-D projection of the encoder embedding for the dashboard map (fit per model version).
    map_x = models.FloatField(null=True, blank=True)
    map_y = models.FloatField(null=True, blank=True)
    attributions = models.JSONField(null=True, blank=True, help_text="[[token, score], ...] when computed")
    scored_at = models.DateTimeField(default=timezone.now)
    # Denormalized from the document so the queue index skips labeled and holdout documents: without
    # it the ranking walks past every labeled document the champion ranks high (18 ms for 2,700 rows
    # at 100,000 documents, growing with the labels). The queue still filters on the document itself,
    # so a flag that is briefly stale costs a skipped row, never a wrong lease.
    in_queue = models.BooleanField(
        default=True, help_text="the document is an unlabeled pool document (the queue's partial index)"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["document", "model_version"], name="one_prediction_per_document_model"),
        ]
        indexes = [
            # The queue: the champion's predictions of unlabeled pool documents in acquisition order.
            models.Index(
                F("model_version"),
                F("acquisition_score").desc(),
                name="prediction_queue_open",
                condition=Q(in_queue=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}@v{self.model_version_id}: {self.predicted_label} {self.confidence:.2f}"


class RunTrigger(models.TextChoices):
    THRESHOLD = "threshold", "New-label threshold"
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    LABEL_SET = "label_set", "Label set changed"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RunTier(models.TextChoices):
    FAST = "fast", "fast"
    DEEP = "deep", "deep"


class TrainingRun(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=10, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # snapshot / train / calibrate / evaluate / promote / rescore / done
    stage = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    labels_used = models.PositiveIntegerField(default=0)
    tier = models.CharField(
        max_length=4, choices=RunTier.choices, blank=True,
        help_text="fast: the head on the champion's encoder; deep: the encoder tuned too (set when it starts)",
    )
    train_seconds = models.FloatField(
        null=True, blank=True, help_text="seconds the training took (not the gate, the cache build or the re-scoring)"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    promoted = models.BooleanField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    # Triggers that arrived while this run was going are counted, not run twice.
    coalesced_triggers = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="how many times a worker started it")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="one_open_training_run_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.project_id}: {self.status} {self.stage} {self.progress:.0%}"


class LabelsAs(models.TextChoices):
    """What an import's label column becomes."""

    GOLD = "gold", "Gold labels for evaluation only"
    TRAINING = "training", "Training labels (an annotation with source import)"


class ImportJob(models.Model):
    """A background bulk import of a CSV / JSONL / Parquet file."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    file_path = models.CharField(max_length=500)
    file_format = models.CharField(max_length=10)
    text_col = models.CharField(max_length=200, default="text")
    external_id_col = models.CharField(max_length=200, blank=True)
    label_col = models.CharField(max_length=200, blank=True)
    labels_as = models.CharField(max_length=8, choices=LabelsAs.choices, default=LabelsAs.GOLD)
    source_col = models.CharField(max_length=200, blank=True, help_text="per-row source of an imported label")
    prediction_col = models.CharField(max_length=200, blank=True, help_text="an external model's label: a suggestion")
    prediction_score_col = models.CharField(max_length=200, blank=True, help_text="its score, 0-1")
    annotator_col = models.CharField(
        max_length=200, blank=True, help_text="per-row username of the member who gave an imported label"
    )
    rows_labeled = models.PositiveIntegerField(default=0, help_text="training labels stored")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    rows_duplicate = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list, blank=True, help_text="[{row, reason}], first 1,000")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="how many times a worker started it")
    detail = models.CharField(max_length=300, blank=True, help_text="what the reconciliation did to it, if anything")
    queued_at = models.DateTimeField(default=timezone.now, help_text="when its message was last sent")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]


class ProjectRole(models.TextChoices):
    """What a member may do in one project (see labeling/roles.py for the capability sets)."""

    MANAGER = "manager"  # settings, members, models, export; labels too
    REVIEWER = "reviewer"  # labels, and reads everyone's labels
    ANNOTATOR = "annotator"  # leases and labels
    INGEST = "ingest"  # a client that feeds documents and asks for predictions


class ProjectMembership(models.Model):
    """One user's role in one project; staff need none (they are site admins)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ProjectRole.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set by the single sign-on role claim (labeling.services.sso): every login re-applies it, and only
    # such memberships are removed when the claim stops naming the project.
    claim_managed = models.BooleanField(default=False)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user_and_project"),
            models.CheckConstraint(
                condition=Q(role__in=ProjectRole.values), name="membership_role_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} is {self.role} of {self.project_id}"


class SsoIdentity(models.Model):
    """An account's identity at an OpenID Connect provider: the provider's stable, never reassigned `sub`."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_sso_subject"),
            models.UniqueConstraint(fields=["user", "issuer"], name="one_sso_subject_per_account_and_issuer"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} is {self.subject} at {self.issuer}"


class MembershipAction(models.TextChoices):
    """How ``GET /members/changes`` names the membership events of the audit log."""

    ADDED = "added"
    ROLE_CHANGED = "role_changed"
    REMOVED = "removed"


class AuditAction(models.TextChoices):
    """What an audit event records; ``<subject>.<verb>``, stable (API filters and exports use them)."""

    PROJECT_CREATED = "project.created", "Project created"
    PROJECT_UPDATED = "project.updated", "Project settings or policy changed"
    PROJECT_DELETED = "project.deleted", "Project deleted"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member's role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MODEL_PROMOTED = "model.promoted", "Model promoted by hand"
    MODEL_ROLLED_BACK = "model.rolled_back", "Model rolled back"
    RETRAIN_REQUESTED = "retrain.requested", "Retrain requested by hand"
    EXPORT_DOWNLOADED = "export.downloaded", "Labels exported"
    ANNOTATION_CHANGED = "annotation.changed", "Label edited"
    REVIEW_DECIDED = "review.decided", "Review decision"
    TOKEN_CREATED = "token.created", "API token created or rotated"
    TOKEN_REVOKED = "token.revoked", "API token revoked"
    GUIDELINES_UPDATED = "guidelines.updated", "Guidelines changed"
    LABEL_SET_CHANGED = "label_set.changed", "Label set changed (add, rename, retire, merge, split)"
    LABELS_IMPORTED = "labels.imported", "Training labels imported"
    REVIEW_CLOSED = "review.closed", "Review item closed by a label-set change"


#: Membership events of the audit log, and their names in ``GET /members/changes``.
MEMBERSHIP_AUDIT_ACTIONS = {
    AuditAction.MEMBER_ADDED: MembershipAction.ADDED,
    AuditAction.MEMBER_ROLE_CHANGED: MembershipAction.ROLE_CHANGED,
    AuditAction.MEMBER_REMOVED: MembershipAction.REMOVED,
}


class AuditLogIsAppendOnly(Exception):
    """An audit event was to be changed or deleted (the database refuses it too: migration 0016)."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("audit events are never updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events are never deleted")


class AuditEvent(models.Model):
    """Append-only: who did what, when, to what (written only by ``labeling.services.audit``).

    The project and the actor are snapshot columns, not foreign keys: the record outlives them (deleting
    a project or a user neither deletes nor blocks its history). A trigger in PostgreSQL refuses UPDATE
    and DELETE on the table; ``save`` and ``delete`` refuse them before the database is asked.
    """

    created_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    # Who: null for a management command, the beat or a migration.
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    # Where: null for site-wide events (API tokens).
    project_id = models.BigIntegerField(null=True, blank=True)
    project_name = models.CharField(max_length=200, blank=True)
    # To what: a kind (user, model_version, annotation, review_item, training_run, project), its id, a name.
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="what changed: old -> new values; never secrets")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project_id", "-created_at", "-id"], name="audit_project_recent"),
            models.Index(fields=["-created_at", "-id"], name="audit_recent"),
            models.Index(fields=["action", "-created_at"], name="audit_action_recent"),
            # A project's actors are few and correlated with it: migration 0016 adds extended statistics on
            # (project_id, actor_name) so the planner walks this index in order instead of sorting them all.
            models.Index(fields=["project_id", "actor_name", "-created_at", "-id"], name="audit_project_actor_recent"),
            models.Index(fields=["actor_name", "-created_at", "-id"], name="audit_actor_name_recent"),
            models.Index(fields=["actor_id", "-created_at"], name="audit_actor_recent"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=AuditAction.values), name="audit_action_is_known"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.target_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("audit events are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events are never deleted")


class ReviewReason(models.TextChoices):
    DISAGREEMENT = "disagreement", "Annotators disagree"
    NOISE = "noise", "Likely mislabeled"
    AUDIT = "audit", "Random audit"
    FLAG = "flag", "Flagged by an annotator"


class ReviewState(models.TextChoices):
    OPEN = "open", "Open"
    DECIDED = "decided", "Decided"
    CLOSED = "closed", "Closed without a decision (a label-set change dissolved the disagreement)"


class ReviewItem(models.Model):
    """A document waiting for (or given) a reviewer's decision, and why it was sent to review."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_items")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="review_items")
    reason = models.CharField(max_length=12, choices=ReviewReason.choices)
    score = models.FloatField(null=True, blank=True, help_text="how likely mislabeled (reason noise); higher first")
    state = models.CharField(max_length=8, choices=ReviewState.choices, default=ReviewState.OPEN)
    # The lease: one reviewer at a time holds an open item, until leased_until.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(
        max_length=300, blank=True, help_text="why it was closed without a decision (state closed)"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["document"], condition=Q(state="open"), name="one_open_review_per_document"
            ),
            models.CheckConstraint(condition=Q(reason__in=ReviewReason.values), name="review_reason_is_known"),
        ]
        indexes = [models.Index(fields=["project", "state"], name="review_project_state")]

    def __str__(self) -> str:
        return f"review {self.pk} of {self.document_id} ({self.reason}, {self.state})"


class ReviewAction(models.TextChoices):
    ACCEPT = "accept", "Accepted a given label"
    OVERRIDE = "override", "Overrode with another label"


class ReviewDecision(models.Model):
    """Append-only: a reviewer's decision on a document, beside (never over) the annotators' labels.

    The latest decision of a document is its final label (``labeling.selectors.consensus``).
    """

    # RESTRICT, not PROTECT: an item cannot be deleted on its own while decisions cite it, but deleting
    # its project or document takes the decisions along (they cascade from both too).
    item = models.ForeignKey(ReviewItem, on_delete=models.RESTRICT, related_name="decisions")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_decisions")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="review_decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=8, choices=ReviewAction.choices)
    label = models.CharField(max_length=ANSWER_MAX_LENGTH)
    # What it replaced: the document's final label before, and who had decided that.
    replaced_label = models.CharField(max_length=ANSWER_MAX_LENGTH, blank=True)
    replaced_by = models.CharField(max_length=64, blank=True, help_text="annotators, reviewer:<name> or empty")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"], name="review_decision_recent")]

    def __str__(self) -> str:
        return f"{self.document_id} -> {self.label} by {self.reviewer_id} ({self.action})"


class ReviewComment(models.Model):
    """A reviewer's note on a review item, without a decision (append-only)."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class FlagKind(models.TextChoices):
    UNCLEAR = "unclear", "Unclear"
    OFFENSIVE = "offensive", "Offensive"
    DUPLICATE = "duplicate", "Duplicate"


class DocumentFlag(models.Model):
    """An annotator's flag on a document: it opens (or joins) the document's review item.

    Its optional comment is a ``ReviewComment`` on that item, so the review page shows it with the rest.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="flags")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="flags")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=FlagKind.choices)
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="flags")
    comment = models.ForeignKey(ReviewComment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Flagging again while the item is in review changes nothing (the first flag stands).
            models.UniqueConstraint(fields=["item", "author", "kind"], name="one_flag_per_item_author_kind"),
            models.CheckConstraint(condition=Q(kind__in=FlagKind.values), name="flag_kind_is_known"),
        ]
        indexes = [models.Index(fields=["project", "kind"], name="flag_project_kind")]

    def __str__(self) -> str:
        return f"flag {self.pk} of {self.document_id} ({self.kind})"


class ApiToken(AbstractAuthToken):
    """An API key, stored only as its SHA-512 digest (django-rest-knox), with an expiry and a client name.

    One token per user and client: creating it again rotates it (the old key stops working at once).
    """

    client = models.CharField(
        max_length=100, default="default", help_text="which script or service holds this key"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "client"], name="api_token_one_per_client")]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.client} ({self.token_key}...)"


class WebhookSubscription(models.Model):
    """A project's receiver: the events it wants, where they go and the secret that signs them."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="event names (labeling.services.events.Event)")
    secret = models.CharField(max_length=128, help_text="HMAC-SHA256 key; generated by the server")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    # Set while the receiver is failing: when its next probe is due. A new event for it waits for that
    # probe in the outbox (no message, no attempt of its own), so an outage costs the workers one probe
    # per backoff step, not one attempt per event; cleared by the first delivery that succeeds.
    retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "active"], name="webhook_project_active")]

    def __str__(self) -> str:
        return f"{self.project_id}: {self.url}"


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event for one subscription: the outbox row written with the change, and its delivery log.

    ``event_id`` is the idempotency id a receiver sees on every attempt, including a redelivery by hand.
    """

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(unique=True)
    event = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker holds the delivery until then (its HTTP call is under way); after it, beat may hand it on.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(state="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} -> {self.subscription_id} ({self.state})"


class LabelSetOperation(models.TextChoices):
    INITIAL = "initial", "The label set the project was created with"
    ADD = "add", "Label added"
    RENAME = "rename", "Label renamed"
    RETIRE = "retire", "Label retired"
    MERGE = "merge", "Labels merged"
    SPLIT = "split", "Label split"


class LabelSetVersion(models.Model):
    """Append-only: one version of a project's label set, and the operation that made it from the one before."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_set_versions")
    version = models.PositiveIntegerField()
    labels = models.JSONField(help_text="the label set of this version: [{name, text, key, ...}]")
    operation = models.CharField(max_length=8, choices=LabelSetOperation.choices)
    # What the operation did: {"label", "new_name", "labels", "into", "new_labels", "migrated", "reopened", ...}.
    data = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="unique_label_set_version"),
            models.CheckConstraint(
                condition=Q(operation__in=LabelSetOperation.values), name="label_set_operation_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} labels v{self.version} ({self.operation})"
