"""Infrastructure: one ComponentResource per capability, plus the stack-config schema."""
