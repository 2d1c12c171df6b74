"""Writers started in a subprocess that pause after staging a batch, for the lake's concurrency tests."""

import subprocess


def release(writer: subprocess.Popen) -> None:
    """Tell a writer paused after staging to commit; it answers 'landed' once it has."""
    writer.stdin.write("\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "landed"
