"""A run that holds a slot of the warehouse pool, as a killed or still-running step does."""

import subprocess
import sys
import textwrap
from pathlib import Path

from dagster_project.resources import WAREHOUSE_POOL

REPO = Path(__file__).resolve().parents[1]

# A run of the instance in DAGSTER_HOME whose step holds a slot of the warehouse pool until killed.
HOLDER = textwrap.dedent(
    f"""
    import time
    import dagster as dg

    @dg.asset(pool={WAREHOUSE_POOL!r})
    def writes_the_warehouse():
        print("holding", flush=True)
        time.sleep(600)

    dg.materialize([writes_the_warehouse], instance=dg.DagsterInstance.get())
    """
)


def hold_a_slot(env=None, wait=True) -> subprocess.Popen:
    """Start the holder; with `wait`, return once its step holds the slot."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, env=env)
    if wait:
        assert holder.stdout.readline().strip() == "holding"
    return holder
