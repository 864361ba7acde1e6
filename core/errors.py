"""The one exception type for problems with what a user gave us (files, CSVs, archives, configs)."""


class InputError(ValueError):
    """Bad user input. The message names the file (or field) and the problem, in plain words."""


def run_job(job: dict, work) -> None:
    """Run `work()` for a background job dict: on failure set status "failed" and a readable error (an InputError's
    own message, else the exception's type and message) instead of dying silently in a thread; always set
    "finished". `work` sets the success status itself."""
    import time

    try:
        work()
    except InputError as exc:
        job.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the page that polls the job
        job.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        job["finished"] = time.time()
