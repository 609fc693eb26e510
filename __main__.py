"""llm-blueprint: this stack's config → components → stack outputs."""

import pulumi

from components.blueprint import build
from components.stack_config import load_stack_config

for key, value in build(load_stack_config()).items():
    pulumi.export(key, value)
