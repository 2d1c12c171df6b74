"""The process a launch of the launcher runs in: the launch's runs, one after the other, each
executed in this process against the instance in $DAGSTER_HOME.

    python -m dagster_project.launcher.worker '<Launch as JSON>'

Started by `runs.execute_runs`, which watches the runs through the instance and stops them by
sending this process SIGINT. With a pipe as standard input (as the launcher starts it) it ends
its process group, itself and a dbt it started, once that pipe closes: its launcher has died.
"""

from __future__ import annotations

import importlib
import os
import signal
import stat
import sys
import threading

from dagster import AssetKey, DagsterInstance, Definitions

from dagster_project.launcher import recovery
from dagster_project.launcher.runs import LAUNCH_TAG, Launch


def load_definitions(target: str) -> Definitions:
    """The Definitions object `module:attribute` names."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _die_with_the_launcher() -> None:
    if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        return

    def watch() -> None:
        # unbuffered reads: a buffered reader's lock would stall this process's exit
        while os.read(sys.stdin.fileno(), 4096):
            pass
        os.killpg(os.getpgrp(), signal.SIGKILL)  # end of file: the launcher's end of the pipe closed

    threading.Thread(target=watch, name="launcher watch", daemon=True).start()


def main(argv: list[str]) -> int:
    launch = Launch.from_json(argv[0])
    _die_with_the_launcher()
    job = load_definitions(launch.definitions).resolve_job_def(launch.job)
    selection = [AssetKey.from_user_string(key) for key in launch.asset_selection] or None
    with DagsterInstance.get() as instance:
        for run in launch.runs:
            result = job.execute_in_process(
                instance=instance,
                run_config=dict(launch.run_config),
                partition_key=run.partition_key,
                asset_selection=selection,
                # owner_tags name this process as the run's, for recovery if it is killed
                tags={**launch.tags, **run.tags, **recovery.owner_tags(), LAUNCH_TAG: launch.launch_id},
                raise_on_error=False,
            )
            if not result.success:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
