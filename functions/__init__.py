"""The Lambda code every stack deploys. No Pulumi import; boto3 comes from the Lambda runtime.

Where the I/O is, at a glance:

    lifecycle.py    PURE  statuses, the task record, transitions, backoff, simulated work, and
                          every decision the worker makes (time and randomness are injected)
    policy.py       PURE  the retry policy and limits the functions read from their
                          environment (plain Python: no pydantic on a queue function's cold start)
    settings.py     PURE  the per-stack settings model (pydantic), for the Pulumi program and
                          the tooling; no handler imports it
    metrics.py      PURE  the custom metrics' namespace, names and dimensions (shared likewise),
                          business outcomes kept apart from faults
    store.py        I/O   DynamoDB task table: conditional writes -> domain exceptions
    queue.py        I/O   SQS: enqueue (delayed: a retry's wait), re-hide a message, send to DLQ
    runtime.py      I/O   reads the environment once, builds the boto3 clients on first use
    api.py          handler  POST /tasks, GET /tasks/{taskId}, GET /openapi.json
    worker.py       handler  one attempt per SQS delivery, partial batch response
    dead_letter.py  handler  DLQ consumer: returns unfinished tasks' messages, FAILs poisonous
                             ones (PoisonMessages metric)
"""
