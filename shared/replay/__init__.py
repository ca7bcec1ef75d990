"""Dead-letter tooling shared by the CLI, the ops API and the console: summarize, browse, plan and replay."""
