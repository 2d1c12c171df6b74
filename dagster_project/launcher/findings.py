"""What a failed run found, as lines for the terminal: failed checks with the band, month and
value of their first failing rows, and failed steps' errors."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import DagsterEventType


def _metadata_value(value):
    return getattr(value, "value", value)


def describe_failed_check(evaluation) -> list[str]:
    """Lines naming a failed check and its findings (band, month, value of the first rows)."""
    name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
    metadata = {key: _metadata_value(value) for key, value in evaluation.metadata.items()}
    lines = [f"check {name} FAILED" + (f" ({metadata['summary']})" if "summary" in metadata else "")]
    for failure in metadata.get("failures") or []:
        expected = failure.get("expected") or {}
        low, high = expected.get("min_value"), expected.get("max_value")
        bounds = {
            (True, True): f" (expected {low}..{high})",
            (True, False): f" (expected >= {low})",
            (False, True): f" (expected <= {high})",
        }.get((low is not None, high is not None), "")
        lines.append(
            f"  {failure.get('expectation')} on {failure.get('column')}{bounds}: "
            f"{failure.get('unexpected_count')} row(s), first:"
        )
        for row in failure.get("rows", [])[:5]:
            keys = [key for key in ("scenario", "band", "month") if key in row]
            ordered = keys + [key for key in row if key not in keys]  # where first, then the value
            lines.append("    " + ", ".join(f"{key} {row[key]}" for key in ordered))
    for key in ("dagster_dbt/failed_row_count",):
        if key in metadata:
            lines.append(f"  failing rows: {metadata[key]}")
    return lines


def step_failures(result) -> dict[str, str]:
    """step key -> what made it fail: a `Failure`'s description, else the innermost error messages.

    `result` is anything holding a run's events as `all_events` (an in-process result, or the
    launcher's `RunOutcome` read back from the instance)."""
    failures = {}
    for event in result.all_events:
        if not (event.is_step_failure and event.step_failure_data):
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            failures[event.step_key] = data.user_failure_data.description.strip()
            continue
        messages, error = [], data.error
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause or error.context
        # Dagster wraps the user's error: the wrapper's message says only which step it was
        failures[event.step_key] = "\n".join(messages[1:] or messages)
    return failures


def check_evaluations(events: Iterable) -> list:
    """The asset check evaluations among a run's events."""
    return [
        event.asset_check_evaluation_data
        for event in events
        if event.event_type_value == DagsterEventType.ASSET_CHECK_EVALUATION.value
    ]


def describe_failure(result) -> list[str]:
    """Everything a failed run found: failed checks with their rows, failed steps' errors."""
    lines = []
    for evaluation in check_evaluations(result.all_events):
        if not evaluation.passed:
            lines += describe_failed_check(evaluation)
    for step, message in step_failures(result).items():
        lines.append(f"step {step} failed: {message[:4000]}")
    return lines
