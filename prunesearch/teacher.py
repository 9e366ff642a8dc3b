"""The small teacher shipped inside the package, so nothing must be trained before a first run.

It is a ``small``-preset joint tracker trained from scratch on built-in synthetic sequences by
``prunesearch teacher train`` (the recipe); stored in fp16 to stay under 10 MB.
"""

from __future__ import annotations

from pathlib import Path

from prunesearch.checkpoints import load_checkpoint
from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import JointTracker

SHIPPED_TEACHER = Path(__file__).parent / "assets" / "small_teacher.pt"


def load_shipped_teacher() -> JointTracker:
    """The shipped small teacher in eval mode, in fp32."""
    if not SHIPPED_TEACHER.is_file():
        raise PrunesearchError(
            f"the shipped teacher {SHIPPED_TEACHER} is missing; rebuild it with `prunesearch teacher train`"
        )
    model = load_checkpoint(SHIPPED_TEACHER)
    if not isinstance(model, JointTracker):
        raise PrunesearchError(f"{SHIPPED_TEACHER} holds a {model.kind} model, not a joint teacher")
    return model
