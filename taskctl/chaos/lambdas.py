"""Invocations: what Lambda does around a handler call, on the simulated clock.

An invocation has a deadline (its start plus the function's timeout); the Lambda context reports
the time left until it. A process that dies - a crash at an AWS call, or the deadline passing -
is modelled by raising a `Death`: a BaseException, so no `except Exception` in the handlers or in
Powertools can catch it, and nothing after that point runs, exactly as when Lambda stops the
process. Invocations nest (a second delivery of the same message run while the first waits on an
AWS call; a second operator racing the first), so they form a stack; a nested one gets its own
Powertools batch processor (`own_batch_processor`), as it would in its own Lambda environment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from functions import api, dead_letter, reconciler, runtime, worker
from taskctl.chaos.clock import SimClock
from taskctl.chaos.events import LambdaContext
from taskctl.chaos.sqs import Received


class Death(BaseException):
    """The simulated process stops here (not an error the code under test may handle)."""


class Crash(Death):
    """The process died at an AWS call (before sending it, or after it was applied)."""


class Timeout(Death):
    """The invocation reached its deadline; Lambda stopped it."""


@dataclass(eq=False)
class Invocation:
    """One running invocation of a function (or of an operator's command)."""

    function: str
    request_id: str
    deadline: datetime
    rt: runtime.Runtime
    nested: bool = False
    # Worker and dead-letter invocations: the receive handed over, by the task its body names.
    batch: dict[str, Received] = field(default_factory=dict)
    # Writes applied (DynamoDB or SQS) during this invocation: a rejected request makes none.
    writes: int = 0
    # (queue URL, body) of every SendMessage applied during this invocation.
    sent: list[tuple[str, str]] = field(default_factory=list)
    # Scripted for this invocation: operation name -> what happens just before that call is sent
    # (run once). The operator's interrupted redrive and racing second operator use it.
    before_call: dict[str, Callable[[], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How an invocation ended: a result, a death, or an exception that escaped the handler."""

    result: Any = None
    death: Death | None = None
    error: Exception | None = None

    @property
    def returned(self) -> bool:
        return self.death is None and self.error is None


@dataclass(eq=False)
class Lambdas:
    """Runs handlers as Lambda would, one invocation stack per world."""

    clock: SimClock
    new_id: Callable[[], str]
    invocations: Counter[str] = field(default_factory=Counter)
    deaths: Counter[str] = field(default_factory=Counter)
    last: Invocation | None = None  # the invocation that ended most recently
    _stack: list[Invocation] = field(default_factory=list)

    @property
    def current(self) -> Invocation | None:
        return self._stack[-1] if self._stack else None

    @property
    def running(self) -> tuple[Invocation, ...]:
        """The invocations under way, outermost first: all but the last wait in an AWS call
        while a nested one runs."""
        return tuple(self._stack)

    def check_deadline(self) -> None:
        """Stop the current invocation if its time is up (Lambda does not wait for a call)."""
        invocation = self.current
        if invocation is not None and self.clock() >= invocation.deadline:
            raise Timeout(f"{invocation.function} reached its deadline")

    def sleep(self, seconds: float) -> None:
        """Botocore's retry backoff: simulated time passes instead; past the deadline the
        invocation is over."""
        invocation = self.current
        if invocation is not None and self.clock.now + timedelta(seconds=seconds) >= (
            invocation.deadline
        ):
            self.clock.advance_to(invocation.deadline)
            raise Timeout(f"{invocation.function} reached its deadline in an SDK backoff")
        self.clock.advance(seconds)

    def invoke(
        self,
        function: str,
        handler: Callable[[Any, Any], Any],
        event: Any,
        rt: runtime.Runtime,
        timeout_s: int,
        *,
        batch: dict[str, Received] | None = None,
        before_call: dict[str, Callable[[], None]] | None = None,
    ) -> Outcome:
        """Run `handler(event, context)` with `rt` installed as the functions' runtime."""
        now = self.clock()
        invocation = Invocation(
            function=function,
            request_id=self.new_id(),
            deadline=now + timedelta(seconds=timeout_s),
            rt=rt,
            nested=bool(self._stack),
            batch=batch or {},
            before_call=before_call or {},
        )
        context = LambdaContext(
            function_name=f"chaos-{function}",
            aws_request_id=invocation.request_id,
            deadline=invocation.deadline,
            clock=self.clock,
        )
        self.invocations[function] += 1
        self._stack.append(invocation)
        runtime.use(rt)
        try:
            # Powertools prints EMF metrics to stdout; in a campaign they are noise by the million.
            with contextlib.redirect_stdout(io.StringIO()):
                return Outcome(result=handler(event, context))
        except Death as death:
            self.deaths[function] += 1
            return Outcome(death=death)
        except Exception as error:
            return Outcome(error=error)
        finally:
            self._stack.pop()
            runtime.use(self._stack[-1].rt if self._stack else None)
            self.last = invocation


@contextlib.contextmanager
def quiet_functions() -> Iterator[None]:
    """The functions' logs off (a campaign would write gigabytes of them); restored after."""
    modules = (api, worker, dead_letter, reconciler)
    loggers = [logging.getLogger(module.logger.name) for module in modules]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Powertools warns about empty metric sets
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def own_batch_processor(module: Any) -> contextlib.AbstractContextManager[Any]:
    """A nested delivery runs in what would be another Lambda environment: give it its own
    Powertools batch processor, or it would overwrite the records and results of the delivery
    it interrupted (the module-level processor is per process, and Lambda runs one invocation
    per process at a time)."""
    shared = module.processor
    own = type(shared)(
        event_type=shared.event_type,
        model=shared.model,
        raise_on_entire_batch_failure=shared.raise_on_entire_batch_failure,
    )
    return mock.patch.object(module, "processor", own)
