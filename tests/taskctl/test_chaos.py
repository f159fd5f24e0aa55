"""`taskctl chaos`: the seeded fault campaign passes over the real handlers, replays from its seed,
and its checker does notice stranded tasks when what prevents them is taken away."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import psutil
import pytest
import typer
from typer.testing import CliRunner

from functions import dead_letter, lifecycle, queue, store, worker
from functions.settings import StackSettings
from taskctl.chaos.campaign import CampaignConfig, CampaignReport, run_campaign
from taskctl.chaos.cli import chaos
from taskctl.chaos.faults import FaultKind, FaultRates
from taskctl.chaos.invariants import Kind
from taskctl.exit_codes import EXIT_INTERRUPTED
from taskctl.local.paths import PROJECT_DIR
from taskctl.program import load_stack_settings

SEED = 20261129


@pytest.fixture(scope="module")
def dev() -> StackSettings:
    return load_stack_settings("dev")


def quiet_campaign(dev: StackSettings, tasks: int, **changes: object) -> CampaignConfig:
    """No fault, no outage, no redrive: what happens is only what the test plants."""
    config = CampaignConfig(
        tasks=tasks,
        seed=SEED,
        settings=dev,
        rates=FaultRates.none(),
        outages_per_task=0.0,
        redrives_per_task=0.0,
    )
    return dataclasses.replace(config, **changes)


def findings(report: CampaignReport) -> list[str]:
    return [f"{v.kind}: {v.task_id} {v.detail}" for v in report.stranded + report.violations]


def test_a_campaign_with_every_fault_kind_strands_no_task_and_breaks_no_invariant(dev):
    # GIVEN the dev stack and a campaign of 80 tasks, with crashes and timeouts twice as
    # likely as by default so that a campaign this small meets every kind of fault
    rates = dataclasses.replace(FaultRates(), crash=0.008, timeout=0.008)
    config = CampaignConfig(tasks=80, seed=SEED, settings=dev, rates=rates)
    # WHEN it runs
    report = run_campaign(config)
    # THEN every fault kind was injected
    assert all(report.faults[kind.value] > 0 for kind in FaultKind), report.faults
    # AND tasks were accepted, some failed, some completed, and the world settled
    summary = report.to_json()
    assert summary["accepted"] > 40
    assert summary["statuses"].get("COMPLETED", 0) > 0 and summary["statuses"].get("FAILED", 0) > 0
    assert summary["settled"] and summary["messagesLeft"] == 0
    # AND no accepted task is left unfinished, and no invariant broke
    assert report.passed, findings(report)


def test_the_same_seed_replays_the_same_campaign(dev):
    # GIVEN one small campaign configuration with faults (no outage: it would only add time)
    config = CampaignConfig(tasks=20, seed=SEED, settings=dev, outages_per_task=0.0)
    # WHEN it runs twice
    first, second = run_campaign(config), run_campaign(config)
    # THEN the same faults were injected at the same calls and every task ended the same way
    assert first.to_json()["accepted"] > 0 and sum(first.faults.values()) > 0
    assert first.to_json()["faultDetails"] == second.to_json()["faultDetails"]
    assert first.digest == second.digest


@pytest.mark.parametrize(("reconciler", "stranded"), [(False, 3), (True, 0)])
def test_messages_deleted_by_hand_strand_their_tasks_unless_the_reconciler_runs(
    dev, reconciler, stranded
):
    # GIVEN a fault-free campaign whose first 3 task messages are deleted as soon as sent
    config = quiet_campaign(dev, 10, lose_messages=3, reconciler=reconciler)
    # WHEN it runs, with or without the reconciler
    report = run_campaign(config)
    # THEN without it exactly those 3 tasks are reported stranded, PENDING; with it none is
    assert len(report.stranded) == stranded, findings(report)
    assert all(found.record["status"] == "PENDING" for found in report.stranded)
    assert report.passed is (stranded == 0)
    assert report.violations == []


@pytest.mark.parametrize("recognise_own_writes", [True, False])
def test_without_own_write_recognition_lost_responses_strand_accepted_tasks(
    dev, monkeypatch, recognise_own_writes
):
    # GIVEN half of all write replies lost (the SDK retries them), nothing else, and no
    # reconciler to cover for mistakes
    config = quiet_campaign(
        dev, 20, rates=dataclasses.replace(FaultRates.none(), lost_response=0.5), reconciler=False
    )
    # AND, in one run, conditional writes that no longer recognise their own earlier try
    if not recognise_own_writes:
        monkeypatch.setattr(store, "_written_by", lambda error, token: False)
    # WHEN the campaign runs
    report = run_campaign(config)
    # THEN lost responses were injected
    assert report.faults[FaultKind.LOST_RESPONSE.value] > 10
    # AND with recognition every task ends; without it, a retried create reads as a repeat
    # request, the API replays its 202 without sending the message, and the checker says so
    if recognise_own_writes:
        assert report.passed, findings(report)
    else:
        assert len(report.stranded) > 0
        assert not report.passed


def reports_only(report: CampaignReport, kind: Kind | None) -> None:
    """The correct code passes (`kind` None); a planted bug is reported as `kind`, alone."""
    if kind is None:
        assert report.passed, findings(report)
    else:
        assert {violation.kind for violation in report.violations} == {kind}, findings(report)


def keep_the_ttl_on_redrive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The redrive's update no longer removes expiresAt (the only write that removes it)."""
    update = store.TaskStore._update

    def keeping_ttl(self, task_id, sets, removes, *args):
        return update(
            self, task_id, sets, [name for name in removes if name != "#expiresAt"], *args
        )

    monkeypatch.setattr(store.TaskStore, "_update", keeping_ttl)


def file_every_task_as_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every status index entry written goes to the OPEN group, FAILED tasks' too."""
    monkeypatch.setattr(store, "index_group", lambda status: store.OPEN_GROUP)


@pytest.mark.parametrize(
    ("plant", "kind"),
    [
        (None, None),
        (keep_the_ttl_on_redrive, Kind.UNFINISHED_TTL),
        (file_every_task_as_open, Kind.STATUS_INDEX_GROUP),
    ],
    ids=["correct", "ttl-kept-on-redrive", "failed-filed-as-open"],
)
def test_a_write_leaving_a_ttl_or_index_entry_that_contradicts_the_status_is_reported(
    dev, monkeypatch, plant, kind
):
    # GIVEN a fault-free campaign in which operators redrive FAILED tasks
    config = quiet_campaign(dev, 30, redrives_per_task=0.2)
    # AND, in some runs, a store that keeps a redriven task's TTL, or files FAILED tasks as open
    if plant is not None:
        plant(monkeypatch)
    # WHEN it runs
    report = run_campaign(config)
    # THEN tasks were redriven, and the correct store passes
    assert report.to_json()["faultDetails"].get("operator redrive: alone -> redriven", 0) > 0
    # AND a planted bug is reported as what it breaks
    reports_only(report, kind)


@pytest.mark.parametrize("stack", ["dev", "prod"])  # prod's backoff has jitter, dev's none
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "exponent-off-by-one"])
def test_a_retry_delay_off_the_backoff_is_reported(stack, planted, monkeypatch):
    # GIVEN a fault-free campaign on the stack, whose failed attempts wait before the next one
    config = quiet_campaign(load_stack_settings(stack), 30, stack=stack)
    # AND, in some runs, a backoff of base x 2^n after attempt n instead of base x 2^(n-1)
    if planted:
        monkeypatch.setattr(
            lifecycle,
            "backoff_ceiling_s",
            lambda attempt, policy: min(
                policy.maxDelaySeconds, policy.backoffBaseSeconds * 2**attempt
            ),
        )
    # WHEN it runs
    report = run_campaign(config)
    # THEN retries were scheduled; the correct backoff passes, the planted one is reported
    assert report.to_json()["delayedSends"] > 5
    reports_only(report, Kind.BACKOFF_BROKEN if planted else None)


def count_dead_letter_returns_without_sending_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead-letter function's sends to the main queue never go out (it still counts each
    return and acknowledges the DLQ message); every other function's do."""
    enqueue = queue.TaskQueue.enqueue

    def enqueue_unless_returning(self, task_id, delay_s=0):
        if sys._getframe(1).f_globals["__name__"] != dead_letter.__name__:
            enqueue(self, task_id, delay_s)

    monkeypatch.setattr(queue.TaskQueue, "enqueue", enqueue_unless_returning)


@pytest.mark.parametrize("planted", [False, True], ids=["correct", "return-never-sent"])
def test_a_dead_letter_of_an_unfinished_task_acknowledged_without_its_return_is_reported(
    dev, monkeypatch, planted
):
    # GIVEN a campaign whose only fault is a DynamoDB outage longer than maxReceiveCount x the
    # visibility timeout, and tasks that mostly fail and wait minutes between their 4 attempts,
    # so some wait through the outage and the redrive policy moves their messages to the DLQ
    waiting = {"maxAttempts": 4, "backoffBaseSeconds": 60, "maxDelaySeconds": 900, "errorRate": 0.9}
    settings = StackSettings.model_validate({**dev.model_dump(), **waiting})
    config = quiet_campaign(settings, 30, outages_per_task=1 / 30)
    # AND, in one run, a dead-letter function that never sends those messages back
    if planted:
        count_dead_letter_returns_without_sending_them(monkeypatch)
    # WHEN it runs
    report = run_campaign(config)
    # THEN messages were moved to the DLQ; the correct function passes, the planted one is
    # reported where it acknowledges (the reconciler recovers those tasks later, so none strands)
    assert report.to_json()["deadLetterMoves"] > 0
    reports_only(report, Kind.DEAD_LETTER_DROPPED if planted else None)


@pytest.mark.parametrize("planted", [False, True], ids=["correct", "lease-in-microseconds"])
def test_an_attempt_declared_lost_while_its_worker_still_runs_is_reported(
    dev, monkeypatch, planted
):
    # GIVEN a campaign whose only fault is a second delivery of a message run inside the first,
    # at one of its calls (so a second worker reads the task while the first one runs)
    config = quiet_campaign(dev, 30, rates=dataclasses.replace(FaultRates.none(), duplicate=0.3))
    # AND, in one run, a claim whose lease counts the time left in microseconds, not ms
    if planted:
        monkeypatch.setattr(
            worker,
            "_lease",
            lambda context: timedelta(microseconds=context.get_remaining_time_in_millis()),
        )
    # WHEN it runs
    report = run_campaign(config)
    # THEN duplicates ran; with the real lease they wait for it, and the campaign passes
    assert report.faults[FaultKind.DUPLICATE.value] > 10
    # AND with the short lease the second delivery takes the attempt over, declaring it LOST
    # while its worker runs, which is reported
    reports_only(report, Kind.LIVE_ATTEMPT_LOST if planted else None)


def test_the_command_prints_a_json_report_and_exits_1_when_tasks_are_stranded(monkeypatch):
    # GIVEN the chaos command, made to run a campaign that strands tasks
    app = typer.Typer(add_completion=False)
    app.command()(chaos)
    app.command("noop")(lambda: None)  # keeps Typer from collapsing to the only command
    real_config = CampaignConfig

    def stranding_config(**kwargs: object) -> CampaignConfig:
        planted = {"rates": FaultRates.none(), "outages_per_task": 0.0, "redrives_per_task": 0.0}
        return real_config(**kwargs, **planted, reconciler=False, lose_messages=2)

    monkeypatch.setattr("taskctl.chaos.campaign.CampaignConfig", stranding_config)
    # WHEN it runs with --json
    result = CliRunner().invoke(app, ["chaos", "--tasks", "10", "--seed", "5", "--json"])
    # THEN it exits 1, and stdout is the JSON report naming the seed and the stranded tasks
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["seed"] == 5 and report["tasks"] == 10
    assert report["stranded"] == 2 and len(report["strandedTasks"]) == 2
    assert report["reproduce"].startswith("python -m taskctl chaos --tasks 10 --seed 5")


def test_the_command_refuses_an_unknown_stack_in_one_line_with_exit_2():
    app = typer.Typer(add_completion=False)
    app.command()(chaos)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["chaos", "--tasks", "5", "--stack", "nope"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: stack nope: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--rate", "5"], "--rate applies"),
        (["--duration", "600"], "--duration applies"),  # the default value, given: still refused
        (["--error-share", "0.5", "--worker-concurrency", "5"], "--error-share, --worker-"),
    ],
    ids=["rate", "duration", "two"],
)
def test_an_option_of_the_scale_mode_without_scale_is_a_usage_error(monkeypatch, args, named):
    # GIVEN a campaign that would run if the command got that far
    def runs(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the campaign ran, its options ignored")

    monkeypatch.setattr("taskctl.chaos.campaign.run_campaign", runs)
    app = typer.Typer(add_completion=False)
    app.command()(chaos)
    app.command("noop")(lambda: None)
    # WHEN an option only --scale reads is given without --scale
    result = CliRunner().invoke(app, ["chaos", "--tasks", "5", *args])
    # THEN exit 2 and one line naming the option and the mode it belongs to; nothing ran
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {named}") and "only to the scale mode: add --scale" in line
    assert result.stdout == ""


def test_ctrl_c_stops_a_campaign_in_several_processes_at_once_with_exit_130():
    # GIVEN a campaign of 3 worlds in 2 processes, so that one world waits in the pool's queue;
    # its own session, SIGINT as a terminal delivers it (a background shell ignores it), and a
    # progress bar that refreshes into the pipe
    command = [sys.executable, "-m", "taskctl", "chaos", "--tasks", "1500", "--jobs", "2"]
    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"}
    process = subprocess.Popen(
        command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    output = bytearray()

    def read() -> None:
        while chunk := process.stdout.read1():
            output.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # WHEN the worlds are under way (client requests answered) and Ctrl-C comes
        deadline = time.monotonic() + 180
        while not re.search(rb"answered[^\n]*?\b[1-9]\d*/\d+", bytes(output)):
            assert process.poll() is None and time.monotonic() < deadline, bytes(output)
            time.sleep(0.2)
        workers = psutil.Process(process.pid).children(recursive=True)
        assert len(workers) >= 2, workers
        os.killpg(process.pid, signal.SIGINT)
        interrupted = time.monotonic()
        returncode = process.wait(timeout=120)
        took_s = time.monotonic() - interrupted
        # THEN it exits 130 within seconds (not after the queued world's run), no worker left
        assert returncode == EXIT_INTERRUPTED, bytes(output)
        assert took_s < 15, f"exited {took_s:.0f} s after SIGINT"
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert alive == [], alive
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(timeout=10)
