"""The `llm-blueprint` command: plan, check, stamp, cost and operate stacks."""

__version__ = "0.1.0"
