"""The stages of a search, by name: a result's stage is its child run's ``stage`` tag, part of its
checkpoint's name and a field of the checkpoint, and what ``pareto --stage`` picks. Plain strings
(a checkpoint may hold nothing but data), kept apart and light so the CLI can offer the names
without loading the search."""

BRIEF = "brief"  # every candidate the search trains, at the brief fine-tune
CONFIRM = "confirm"  # the brief front and its ties, fine-tuned further (search/confirm.py)
STAGES = (BRIEF, CONFIRM)
