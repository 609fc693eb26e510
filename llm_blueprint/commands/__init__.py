"""The `llm-blueprint` command groups, one module each; `llm_blueprint.cli` assembles them."""
