"""A campaign: N tasks split into independent worlds of at most `WORLD_TASKS`, run in as many
processes as asked, and their findings added up.

Each world's plan depends only on the seed, N and the stack, never on how many processes run
them, so the same seed and N give the same campaign (the `digest` says so) on any machine with
the same pinned dependencies.
Smaller worlds also keep moto's tables small, and spread over the cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import queue as queue_module
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from functions.settings import StackSettings
from taskctl.chaos.faults import FaultRates
from taskctl.chaos.invariants import Violation
from taskctl.chaos.world import World, WorldPlan, WorldReport

WORLD_TASKS = 500
# At N=5,000: 150 outage windows (15 per world) and 250 operator redrives; `make chaos` must
# inject every fault kind at least 100 times at that size.
OUTAGES_PER_TASK = 1 / 35
REDRIVES_PER_TASK = 1 / 20
SHOWN_FINDINGS = 50  # per list in the JSON report; the counts are always complete
STOP_GRACE_S = 5.0  # how long a worker told to end (SIGTERM) has before it is killed


@dataclass(frozen=True)
class CampaignConfig:
    """What to run: `tasks` submits under `settings` (stack `stack`), every random choice drawn
    from `seed`. The rest has campaign defaults; tests change them to plant a scenario."""

    tasks: int
    seed: int
    settings: StackSettings
    stack: str = "dev"
    rates: FaultRates = field(default_factory=FaultRates)
    outages_per_task: float = OUTAGES_PER_TASK
    redrives_per_task: float = REDRIVES_PER_TASK
    reconciler: bool = True
    lose_messages: int = 0  # see WorldPlan.lose_messages (the first world only)

    def __post_init__(self) -> None:
        if self.tasks < 1:
            raise ValueError(f"tasks={self.tasks}: a campaign needs at least one task")

    def worlds(self) -> list[WorldPlan]:
        count = math.ceil(self.tasks / WORLD_TASKS)
        sizes = [self.tasks // count + (index < self.tasks % count) for index in range(count)]
        return [
            WorldPlan(
                index=index,
                seed=self.seed,
                tasks=size,
                settings=self.settings,
                stack=self.stack,
                outages=math.ceil(size * self.outages_per_task),
                redrives=math.ceil(size * self.redrives_per_task),
                rates=self.rates,
                reconciler=self.reconciler,
                lose_messages=self.lose_messages if index == 0 else 0,
            )
            for index, size in enumerate(sizes)
        ]


@dataclass
class CampaignReport:
    """The worlds' reports, added up; `passed` if nothing is stranded and nothing broke."""

    config: CampaignConfig
    worlds: list[WorldReport]
    wall_s: float = 0.0

    @property
    def stranded(self) -> list[Violation]:
        return [finding for world in self.worlds for finding in world.stranded]

    @property
    def violations(self) -> list[Violation]:
        return [finding for world in self.worlds for finding in world.violations]

    @property
    def passed(self) -> bool:
        return not self.stranded and not self.violations

    def total(self, name: str) -> int:
        return sum(getattr(world, name) for world in self.worlds)

    def added(self, name: str) -> dict[str, int]:
        """A per-world Counter field, added up."""
        total: Counter[str] = Counter()
        for world in self.worlds:
            total.update(getattr(world, name))
        return dict(total)

    @property
    def faults(self) -> dict[str, int]:
        return self.added("faults")  # every world counts every kind, in FaultKind's order

    @property
    def digest(self) -> str:
        combined = hashlib.sha256("".join(world.digest for world in self.worlds).encode())
        return combined.hexdigest()[:16]

    @property
    def reproduce(self) -> str:
        return (
            f"python -m taskctl chaos --tasks {self.config.tasks} --seed {self.config.seed} "
            f"--stack {self.config.stack}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seed": self.config.seed,
            "tasks": self.config.tasks,
            "stack": self.config.stack,
            "worlds": len(self.worlds),
            "reproduce": self.reproduce,
            "digest": self.digest,
            "requests": self.total("requests"),
            "accepted": self.total("accepted"),
            "rejected": self.total("rejected"),
            "gaveUp": self.total("gave_up"),
            "statuses": self.added("statuses"),
            "stranded": len(self.stranded),
            "violations": len(self.violations),
            "violationCounts": dict(Counter(found.kind for found in self.violations).most_common()),
            "faults": self.faults,
            "faultDetails": dict(sorted(self.added("fault_details").items())),
            "invocations": self.added("invocations"),
            "deaths": self.added("deaths"),
            "awsAttempts": self.total("aws_attempts"),
            "outageRefusals": self.total("outage_refusals"),
            "reconcilerRecoveries": self.total("reconciler_recoveries"),
            "deadLetterMoves": self.total("dead_letter_moves"),
            "messagesLeft": self.total("messages_left"),
            "delayedSends": self.total("delayed_sends"),
            "peakInFlight": max(world.peak_in_flight for world in self.worlds),
            "settled": all(world.settled for world in self.worlds),
            "simulatedSeconds": round(max(world.simulated_s for world in self.worlds), 1),
            "wallSeconds": round(self.wall_s, 1),
            "strandedTasks": [asdict(found) for found in self.stranded[:SHOWN_FINDINGS]],
            "violationList": [asdict(found) for found in self.violations[:SHOWN_FINDINGS]],
        }


def run_campaign(
    config: CampaignConfig, *, jobs: int = 1, progress: Callable[[int], None] | None = None
) -> CampaignReport:
    """Run every world of `config` (in `jobs` processes) and add up what they found.
    `progress(n)`: n more client requests got their final answer."""
    started = time.perf_counter()
    plans = config.worlds()
    if jobs <= 1 or len(plans) == 1:
        reports = [World(plan, progress).run() for plan in plans]
    else:
        reports = _run_in_processes(plans, min(jobs, len(plans)), progress or (lambda _n: None))
    return CampaignReport(config, reports, time.perf_counter() - started)


def _run_in_processes(
    plans: list[WorldPlan], jobs: int, progress: Callable[[int], None]
) -> list[WorldReport]:
    # spawn, not fork: the same on every platform, and no parent threads (the progress bar's)
    # copied into a child half-way through something.
    context = multiprocessing.get_context("spawn")
    updates = context.Queue()
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_child_init, initargs=(updates,)
    )
    finished = False
    try:
        futures = [pool.submit(_child_run, plan) for plan in plans]
        while not all(future.done() for future in futures):
            _drain(updates, progress, timeout_s=0.2)
        _drain(updates, progress, timeout_s=0.0)
        reports = [future.result() for future in futures]
        finished = True
        return reports
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # an error or Ctrl-C: do not wait for the other worlds to run to their end
            _stop_now(pool)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel the worlds not started and end the worker processes at once.

    `shutdown(wait=False, cancel_futures=True)` alone is not enough: a world already handed to
    the pool's call queue cannot be cancelled, a worker that Ctrl-C interrupted takes it next, and
    the interpreter waits for it at exit, up to a whole world's run. Python 3.14's
    `ProcessPoolExecutor.terminate_workers` does what this does; before it, the processes are
    only in the private `_processes`."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # already gone, or already closed
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _drain(updates: Any, progress: Callable[[int], None], timeout_s: float) -> None:
    with contextlib.suppress(queue_module.Empty):
        progress(updates.get(timeout=timeout_s) if timeout_s else updates.get_nowait())
        while True:
            progress(updates.get_nowait())


_updates: Any = None


def _child_init(updates: Any) -> None:
    global _updates
    _updates = updates


def _child_run(plan: WorldPlan) -> WorldReport:
    return World(plan, _updates.put).run()
