"""The Pulumi program: this stack's config -> one BlueGreenService (see docs/pulumi.md)."""

import pulumi

from components.program import build, config_values, export
from stacks.spec import spec_from_config

stack = pulumi.get_stack()
spec = spec_from_config(stack, config_values(), source=f"stacks/Pulumi.{stack}.yaml")
service = build(spec)
export(service)
