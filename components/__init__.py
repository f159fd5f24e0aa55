"""The stack's building blocks, one ComponentResource per AWS concept (one per file).

`task_queues.TaskQueues`, `task_table.TaskTable`, `task_function.TaskFunction`,
`task_api.TaskApi`, `monitoring.Monitoring`; plus `packaging` (the functions' bundle), `iam`
(typed policy statements), `tagging` (the AWS provider and its default tags) and
`stack_settings` (config -> validated settings). Components take
typed arguments and never read Pulumi config or the stack name themselves.
"""
