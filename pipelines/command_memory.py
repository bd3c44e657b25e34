"""What one command keeps of the pipeline row it locked.

A command that locked a pipeline may keep what it read of it (its latest jobs, as it changes
them; the project's hooks; whatever its signals' receivers need) so that nothing reads them
again in that command. It lives on the instance for that command only: the command forgets
it when it ends. ``pipelines.models.Pipeline`` takes these methods.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps

from pipelines.prepared import PreparedQuery

# Jobs are pipelines.models.Job rows; named Any here, since models imports this module.
Job = Any

# Pipeline.latest_jobs() with the jobs' users, by the pipeline's id: what every commit status
# reads of its pipeline (its SQL built once, pipelines.prepared).
LATEST_JOBS_WITH_USERS = PreparedQuery(
    lambda pipeline_id: (
        apps.get_model("pipelines", "Job")
        .objects.filter(pipeline_id=pipeline_id, retried=False)
        .select_related("user")
        .order_by("stage_idx", "id")
    )
)


class CommandMemory:
    def remember(self, key: str, value) -> None:
        self.__dict__.setdefault("_loaded", {})[key] = value

    def recall(self, key: str, load=None):
        """What the running command keeps under ``key``; else ``load()`` (kept when the
        command keeps what it reads), or None."""
        loaded = self.__dict__.get("_loaded")
        if loaded is None:
            return load() if load is not None else None
        if key not in loaded:
            if load is None:
                return None
            loaded[key] = load()
        return loaded[key]

    def forget_loaded(self) -> None:
        self.__dict__.pop("_loaded", None)

    def loaded_latest_jobs(self) -> list[Job] | None:
        """The latest jobs the running command keeps (users loaded, stage order), if any."""
        return self.recall("latest_jobs")

    def load_latest_jobs(self) -> list[Job]:
        """Read the latest jobs with their users once and keep them for this command."""
        jobs = LATEST_JOBS_WITH_USERS(self.pk)
        for job in jobs:
            job.pipeline = self  # as the pipeline's related manager would
        self.remember("latest_jobs", jobs)
        return jobs

    def keep_job(self, job: Job) -> None:
        """A job the command saved joins (or replaces its row in) the kept latest jobs."""
        jobs = self.loaded_latest_jobs()
        if jobs is None:
            return
        jobs[:] = [j for j in jobs if j.pk != job.pk and not j.retried]
        if not job.retried:
            jobs.append(job)
        jobs.sort(key=lambda j: (j.stage_idx, j.pk))
