"""The Pulumi program: this stack's config -> one BlueGreenService (see docs/pulumi.md)."""

import pulumi

from components.program import build, export, load_spec

# A bad stack value or app definition stops here with one sentence (a pulumi.RunError).
spec = load_spec(pulumi.get_stack())
service = build(spec)
export(service)
