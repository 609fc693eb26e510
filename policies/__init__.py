"""Policy as code: rules as pure functions, shared by the CrossGuard pack and `llm-blueprint check`."""
