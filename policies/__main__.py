"""CrossGuard entry point: `pulumi preview --policy-pack policies`.

Constructing the PolicyPack starts the policy gRPC server and blocks; nothing
but the Pulumi CLI should run this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.crossguard import policies  # noqa: E402

PolicyPack(name="llm-blueprint", policies=policies())
