"""Options that several commands share, each defined once.

Every function adds one option (or one small set that belongs together) to a
parser or argument group. The flag, its type and its action live here; where
commands explain an option in their own words (``--out``, ``--num-threads``) the
help text is an argument, so ``attnmoe COMMAND --help`` reads as before.
"""

from __future__ import annotations

import argparse

#: a parser or one of its argument groups: both have ``add_argument``
Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def add_seed(parser: Parser, help: str | None = None) -> None:
    """``--seed``: an integer seed, default 0."""
    parser.add_argument("--seed", type=int, default=0, help=help)


def add_random_state(parser: Parser, help: str | None = None) -> None:
    """``--random-state``: an integer seed, default 0 (for functions whose knob is
    scikit-learn's ``random_state``)."""
    parser.add_argument("--random-state", type=int, default=0, help=help)


def add_out(
    parser: Parser, help: str | None, *, default: str | None = None, required: bool = False
) -> None:
    """``--out``: where the command writes."""
    parser.add_argument("--out", default=default, required=required, help=help)


def add_quiet(parser: Parser, help: str | None = None) -> None:
    """``--quiet``: no progress output."""
    parser.add_argument("--quiet", action="store_true", help=help)


def add_jobs(parser: Parser, help: str) -> None:
    """``--jobs``: how many fits (or runs) at a time, default 2."""
    parser.add_argument("--jobs", type=int, default=2, help=help)


def add_num_threads(parser: Parser, *, default: int | None, help: str) -> None:
    """``--num-threads``: torch threads (per process when several train)."""
    parser.add_argument("--num-threads", type=int, default=default, help=help)


def add_device(
    parser: Parser,
    *,
    choices: list[str] | None = None,
    default: str | None = None,
    help: str | None = None,
) -> None:
    """``--device``: the torch device to train on, checked to exist on this machine."""
    parser.add_argument("--device", type=torch_device, choices=choices, default=default, help=help)


def torch_device(text: str) -> str:
    """``text`` if it names a torch device this machine has (``cpu``, ``cuda:1``, ``mps``).

    Raises
    ------
    argparse.ArgumentTypeError
        An unknown device, or a GPU this torch build or machine does not have
        (torch would fail later with a traceback).
    """
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torch device (cpu, cuda, ...)"
        ) from None
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type != "cpu" and not available.get(device.type, lambda: False)():
        raise argparse.ArgumentTypeError(f"this machine has no {device.type} device for torch")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} cuda device(s)"
            )
    return text


def add_block(parser: Parser) -> None:
    """``--block``: the layer form, ``pure`` (the paper's) or ``bert``."""
    parser.add_argument("--block", choices=["pure", "bert"], default="pure")


def add_d_model(parser: Parser, help: str | None = None) -> None:
    """``--d-model``: the model width, default 64."""
    parser.add_argument("--d-model", type=int, default=64, help=help)


def add_precision(parser: Parser) -> None:
    """``--precision``: fp32, or bf16 autocast (weights and optimizer stay fp32)."""
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")


def add_checkpoint_options(
    parser: Parser, *, dir_help: str | None, every_help: str, resume_help: str
) -> None:
    """``--checkpoint-dir``, ``--checkpoint-every`` (steps) and ``--resume``."""
    parser.add_argument("--checkpoint-dir", default=None, help=dir_help)
    parser.add_argument("--checkpoint-every", type=int, default=0, help=every_help)
    parser.add_argument("--resume", action="store_true", help=resume_help)


def add_nproc(parser: Parser, help: str) -> None:
    """``--nproc``: data-parallel processes, default 1."""
    parser.add_argument("--nproc", type=int, default=1, help=help)


def add_ddp_options(parser: Parser, *, bind_cores_help: str, poll_allreduce_help: str) -> None:
    """``--bind-cores`` and ``--[no-]poll-allreduce``: how data-parallel processes use the CPUs.

    ``--poll-allreduce`` defaults to None, which lets the trainer decide.
    """
    parser.add_argument("--bind-cores", action="store_true", help=bind_cores_help)
    parser.add_argument(
        "--poll-allreduce",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=poll_allreduce_help,
    )


def add_settings(parser: Parser, *, default: list[str] | None, help: str) -> None:
    """``--settings``: the paper's simulation settings by name (none given: only auto-mpg)."""
    parser.add_argument("--settings", nargs="*", default=default, metavar="SETTING", help=help)


def add_auto_mpg_seeds(parser: Parser, default: int) -> None:
    """``--auto-mpg-seeds``: seeds of the auto-mpg runs."""
    parser.add_argument("--auto-mpg-seeds", type=int, default=default)
