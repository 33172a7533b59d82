"""Retrain and recalibrate, one module per concern.

A run goes through stages, each written to the TrainingRun in its own short transaction so the
admin, the API and ``manage.py retrain --sync`` can watch it:

    snapshot -> train -> calibrate -> evaluate -> promote | reject -> rescore -> done

- ``triggers``: when a run is due, and queueing one (``training_run_request``, ``retrain_due``,
  ``project_check_retrain``, ``training_scheduled``). Single flight: at most one queued/running run
  per project (a database constraint); a trigger that arrives while one is open is counted on it.
- ``runs``: claiming and executing a run (``training_run_execute``): rows to arrays, one call to
  ``modelsvc.training.train`` and one to ``modelsvc.holdout.holdout_assess``, the artifact saved.
  The executing task holds a PostgreSQL advisory lock keyed by the run for its whole life; the
  server drops it when the worker dies, which is how ``reconciliation`` tells a crash from a slow run.
- ``label_issues``: the run's training labels ranked by how likely they are wrong (``modelsvc.noise`` on
  the out-of-fold probabilities); the top share is recorded on the challenger for review.
- ``evaluation``: the challenger and the champion on the same labeled holdout, for the gate
  (``modelsvc.promotion.promotion_decision``, rule in docs/WORKERS.md).
- ``promotion``: recording the gate's decision, and the admin's promote / rollback.
- ``recalibration``: after a rejection the kept champion's temperature is refit on the grown holdout
  (``champion_recalibrate``).
- ``reconciliation``: the beat's repair of runs whose worker died or whose message was lost.
"""
