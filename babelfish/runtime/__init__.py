"""The pipeline at run time: the supervisor and what it runs on (processes, utterances, budgets)."""
