"""Background bulk imports: a thin task over ``labeling.services.imports``, on the imports queue."""

from __future__ import annotations

from labeling.services import import_jobs
from labeling.services.dispatch import TaskName
from workers.app import task


# Idempotent: the job is taken under its advisory lock and a row lock, only while open, and rows
# already imported count as duplicates on a re-run, so a redelivered message does no harm.
@task(TaskName.IMPORT_FILE)
def import_file(import_job_id: int) -> dict[str, object] | None:
    job = import_jobs.import_job_run(import_job_id)
    if job is None:
        return None
    return {"status": job.status, "imported": job.rows_imported, "duplicates": job.rows_duplicate,
            "rejected": job.rows_rejected}
