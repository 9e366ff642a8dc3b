"""``prunesearch data synth`` and ``prunesearch teacher train``: built-in data and the shipped teacher."""

from __future__ import annotations

import argparse

from pathlib import Path

from prunesearch.cli import args as argtypes

# Where `teacher train` writes by default: the working folder, never the package's own shipped file.
DEFAULT_TEACHER_OUT = "small_teacher.pt"
TEACHER_BYTES = 10 << 20


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="built-in synthetic tracking data")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    p = data_sub.add_parser("synth", help="write synthetic sequences as a GOT-10k split (OUT/SPLIT/...)")
    p.add_argument("--out", type=argtypes.nonempty_path, required=True, help="output folder; the split is written to OUT/SPLIT")
    p.add_argument("--sequences", type=argtypes.count, required=True,
                   help="number of sequences (at most synthetic.MAX_SEQUENCES, 100000; about 1 MB each)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="base seed (train and val never share a sequence)")
    p.add_argument("--split", default="train", choices=["train", "val"], help="split name")
    p.set_defaults(func=cmd_synth)

    teacher = sub.add_parser("teacher", help="the small teacher shipped with the package")
    teacher_sub = teacher.add_subparsers(dest="teacher_command", metavar="COMMAND", required=True)
    p = teacher_sub.add_parser(
        "train", help="train the small preset's joint teacher from scratch on the built-in train split"
    )
    p.add_argument("--out", type=argtypes.nonempty_path, default=Path(DEFAULT_TEACHER_OUT),
                   help=f"output checkpoint (default: ./{DEFAULT_TEACHER_OUT}; the shipped teacher inside the package is never "
                   "replaced unless named here)")
    p.add_argument("--steps", type=argtypes.whole(1, 10_000_000), default=None,
                   help="optimiser steps of batch 16 (default: the recipe's 12000)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the initialisation and the pair sampler")
    p.add_argument("--threads", type=argtypes.whole(1, 1024), default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", type=argtypes.nonempty, default="auto", metavar="DEV", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_teacher_train)


def cmd_synth(args: argparse.Namespace) -> int:
    from prunesearch.data.synthetic import generate

    root = generate(args.out, args.sequences, seed=args.seed, split=args.split)
    print(f"wrote {args.sequences} sequences to {root}")
    return 0


def cmd_teacher_train(args: argparse.Namespace) -> int:
    import torch

    from prunesearch.devices import resolve_device
    from prunesearch.outputs import check_output
    from prunesearch.teacher import TEACHER_STEPS, train_teacher

    device = str(resolve_device(args.device))  # a device that is not here fails before any work
    out = check_output(args.out, "--out", estimate=TEACHER_BYTES)  # and a place that cannot be written
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = TEACHER_STEPS if args.steps is None else args.steps

    def progress(step: int, m: dict[str, float]) -> None:
        print(
            f"step {step:5d}/{steps}  loss {m['loss']:.3f}  focal {m['focal']:.3f}  giou {m['giou']:.3f}  "
            f"l1 {m['l1']:.4f}  iou {m['iou']:.3f}  lr {m['lr']:.2e}  {m['seconds']:.0f}s",
            flush=True,
        )

    result = train_teacher(out, steps=steps, seed=args.seed, progress=progress, device=device)
    print(f"saved {out} after {result.steps} steps in {result.seconds:.0f}s, final loss {result.final_loss:.3f}")
    return 0
