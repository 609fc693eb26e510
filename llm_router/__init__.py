"""Data plane: the code that runs inside Lambda and under `llm-blueprint serve`.

Never imports Pulumi; reads its settings from the environment the `Router`
component sets.
"""
