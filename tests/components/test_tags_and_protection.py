"""What Pulumi users expect of the program: every resource tagged through the provider's default
tags, and the prod task table protected from deletion at the Pulumi level as well as by DynamoDB."""

from __future__ import annotations

import json

import pytest
from stack_runs import ProgramRun, run_stack

from components.tagging import DefaultTags
from taskctl.program import RecordingMocks, load_stack_config, project_name, run_program

PROVIDER = "pulumi:providers:aws"
TABLE = "aws:dynamodb/table:Table"
TAG_KEYS = {"project", "stack", "service"}


def _provider(run: ProgramRun):
    (provider,) = run.created(PROVIDER)
    return provider


def _default_tags(run: ProgramRun) -> dict[str, str]:
    """The provider's default tags (a provider's object inputs reach the engine as JSON)."""
    return json.loads(_provider(run).inputs["defaultTags"])["tags"]


def _provider_reference(run: ProgramRun) -> str:
    """How resources refer to the provider: "<its URN>::<its id>"."""
    provider = _provider(run)
    urn = (
        f"urn:pulumi:{run.stack}::{project_name()}::pulumi:pulumi:Stack${PROVIDER}::{provider.name}"
    )
    return f"{urn}::{provider.resource_id}"


# -- tags ------------------------------------------------------------------------------------


def test_the_provider_tags_with_project_stack_and_service(program_run):
    # GIVEN the stack WHEN the program runs THEN it declares one AWS provider
    provider = _provider(program_run)
    # AND its default tags name the project, the stack and the service
    assert _default_tags(program_run) == {
        "project": "fault-tolerant-tasks",
        "stack": program_run.stack,
        "service": "task-processing",
    }
    # AND it deploys into the stack's configured region (an explicit provider reads no aws: config)
    assert provider.inputs["region"] == load_stack_config(program_run.stack)["aws:region"]


def test_every_aws_resource_is_managed_by_the_tagging_provider(program_run):
    reference = _provider_reference(program_run)
    aws_resources = [r for r in program_run.mocks.resources if r.type_token.startswith("aws:")]
    assert len(aws_resources) >= 20
    # THEN no resource falls back to the default provider, which would leave it untagged
    untagged = [(r.type_token, r.name) for r in aws_resources if r.provider != reference]
    assert untagged == []


def test_no_resource_sets_the_default_tags_itself(program_run):
    # Tags come from the provider, not per resource: one place to change, none to forget.
    for resource in program_run.mocks.resources:
        tags = resource.inputs.get("tags") or {}
        assert TAG_KEYS.isdisjoint(tags), (resource.type_token, resource.name, tags)


def test_dev_and_prod_resources_carry_their_own_stack_tag():
    dev_tags, prod_tags = _default_tags(run_stack("dev")), _default_tags(run_stack("prod"))
    assert (dev_tags["stack"], prod_tags["stack"]) == ("dev", "prod")
    assert {k: v for k, v in dev_tags.items() if k != "stack"} == {
        k: v for k, v in prod_tags.items() if k != "stack"
    }


@pytest.mark.parametrize("bad", ["", "x" * 257, "semi;colon"])
def test_a_tag_value_aws_would_refuse_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="tag service="):
        DefaultTags(project="p", stack="dev", service=bad)


# -- protecting prod data --------------------------------------------------------------------


def _table(run: ProgramRun):
    return run.one(TABLE, "tasks-table")


def test_prod_table_is_protected_by_pulumi_and_by_dynamodb():
    table = _table(run_stack("prod"))
    assert table.protect is True
    assert table.inputs["deletionProtectionEnabled"] is True


def test_dev_table_can_be_destroyed():
    table = _table(run_stack("dev"))
    assert table.protect is False
    assert table.inputs["deletionProtectionEnabled"] is False


def test_table_is_the_only_protected_resource(program_run):
    protected = [(r.type_token, r.name) for r in program_run.mocks.resources if r.protect]
    expected = [(TABLE, "tasks-table")] if program_run.settings.deletionProtection else []
    assert protected == expected


def test_protection_follows_the_deletion_protection_setting_not_the_stack_name():
    # GIVEN dev with deletionProtection turned on, and prod with it turned off
    key = f"{project_name()}:deletionProtection"
    dev_mocks, prod_mocks = RecordingMocks(), RecordingMocks()
    run_program("dev", dev_mocks, config_overrides={key: "true"})
    run_program("prod", prod_mocks, config_overrides={key: "false"})
    # THEN both guards follow the one setting
    dev_table, prod_table = (
        dev_mocks.one(TABLE, "tasks-table"),
        prod_mocks.one(TABLE, "tasks-table"),
    )
    assert (dev_table.protect, dev_table.inputs["deletionProtectionEnabled"]) == (True, True)
    assert (prod_table.protect, prod_table.inputs["deletionProtectionEnabled"]) == (False, False)
