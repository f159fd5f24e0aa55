"""`taskctl chaos`: a deterministic, seeded fault campaign over the real handlers (DESIGN §8).

The API, worker, dead-letter and reconciler handlers run unchanged, with their deployed client
config, against moto's DynamoDB and simulated SQS queues and event source mappings, all on a
simulated clock (`clock`, `sqs`, `dynamodb`, `events`, `lambdas`). Faults are injected at exact
AWS calls (`faults`); an event loop drives clients, mappings, the reconciler's schedule, outages
and an operator's redrives (`world`); after the faults stop and everything settles, the
invariants are checked (`invariants`). `campaign` splits N tasks into worlds and runs them in
processes; `cli` is the command. The same seed and N replay the same campaign.

The simulated clock, queues, event source mapping player and events are also what the handler
tests (tests/functions) and `taskctl bench` run on: one model of SQS on simulated time.
"""
