"""The command line: ``python -m transfer_lib COMMAND ...``.

Each command lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shlex
import sys
from collections.abc import Iterable, Sequence

from transfer_lib.cli.types import BadValue
from transfer_lib.utils.errors import TransferError

# command -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("transfer_lib.cli.summary", "build a model, print its summary and run a forward pass"),
    "synth": ("transfer_lib.cli.synth", "write the synthetic expression data set in RAF-DB's layout"),
    "pretrain": ("transfer_lib.weights.pretrain", "train the tiny stem to recognise synthetic identities (IR-50 analogue)"),
    "train": ("transfer_lib.cli.train", "train a model (profiles smoke, cpu, paper)"),
    "eval": ("transfer_lib.cli.evaluate", "evaluate a checkpoint or the authors' released weights"),
    "ablate": ("transfer_lib.book.ablate", "run the paper's ablation rows over seeds and tabulate"),
    "attention": ("transfer_lib.book.attention", "measure the LANet maps and attention rollout of an ablation's runs"),
    "bench": ("transfer_lib.bench", "benchmark the data pipeline or training speed"),
    "predict": ("transfer_lib.predict", "detect faces in photos and print expression probabilities"),
    "weights": ("transfer_lib.weights.fetch", "download timm's ViT-Small; say where to get the IR-50"),
    "export": ("transfer_lib.export", "export a checkpoint to ONNX and check it in onnxruntime"),
}


class UsageError(TransferError):
    """A value that an option's type (:mod:`transfer_lib.cli.types`) refused."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, except that a value refused by its :mod:`~transfer_lib.cli.types`
    type raises :class:`UsageError` ``--OPTION VALUE: expected ...``, which ``main`` prints as
    every other bad input, one ``error:`` line and exit 2. Sub-commands' parsers are of this
    class too (argparse makes them of their parent's class)."""

    def _get_value(self, action, arg_string):
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as err:
            bad = err.__context__
            if not isinstance(bad, BadValue):
                raise
            name = action.option_strings[0] if action.option_strings else action.metavar
            raise UsageError(f"{name or action.dest} {shlex.quote(arg_string)}: expected "
                             f"{bad.expected}") from None


NATIVE_HELP = ("PyTorch's own CPU kernels and thread count: faster on CPUs with AVX-512 or AMX, "
               "but another draw of a seed (default: AVX2 kernels and 2 threads, the same numbers "
               "on every x86 CPU; also TRANSFER_NATIVE=1)")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command (``commands`` None), or one whose subcommands are all listed
    but only those in ``commands`` get their options: only their modules are imported (a
    module may import torch), so that ``--help`` and an unknown command answer at once."""
    wanted = set(COMMANDS if commands is None else commands)
    parser = Parser(
        prog="python -m transfer_lib",
        description="TransFER facial expression recognition: data, training, evaluation, tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        if name not in wanted:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.add_argument("--native", action="store_true", help=NATIVE_HELP)
        p.set_defaults(_module=module)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (the top-level parser
    has no option that takes a value), or None when there is none or it is no command."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


#: What to do about an OS error on one of the user's files or folders, by errno.
OS_ERROR_HINTS: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EACCES: "choose a file or folder you may write to",
    errno.EPERM: "choose a file or folder you may write to",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EISDIR: "this is a folder: give a file name",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.ENOENT: "check the path",
}


def user_message(err: TransferError) -> str:
    """The message of ``err``; one re-raised by a DataLoader worker arrives with the worker's
    whole traceback in it ("Caught DataError in DataLoader worker process 0. Original
    Traceback ..."), of which only the original message is kept."""
    text = str(err)
    if "Original Traceback (most recent call last):" in text:
        for name in (f"{type(err).__module__}.{type(err).__qualname__}: ",
                     f"{type(err).__qualname__}: "):
            if name in text:
                return text.rsplit(name, 1)[1].rstrip()
    return text


def os_error_message(err: OSError) -> str | None:
    """``error: ...`` text for an OS error about one of the user's paths, or None for others."""
    if err.errno not in OS_ERROR_HINTS:
        return None
    what = f"{err.strerror or os.strerror(err.errno)} ({OS_ERROR_HINTS[err.errno]})"
    if err.filename:
        return f"{err.filename}: {what}"
    # a full disk may show only when a file is closed, where Python no longer names it
    return what if err.errno in (errno.ENOSPC, errno.EDQUOT) else None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` name one file (a link, ``./x`` and ``x``, a hard link)."""
    from pathlib import Path

    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # a loop of links: not ours to judge here
        return False


def json_object_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a JSON object (what a command's --json writes), read only when
    small: no data set's labels or images are one."""
    import json

    try:
        if os.path.getsize(path) > 1 << 22:
            return False
        with open(path, "rb") as f:
            return isinstance(json.loads(f.read()), dict)
    except (OSError, ValueError):
        return False


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` lies somewhere under ``folder`` (links resolved)."""
    from pathlib import Path

    try:
        return Path(folder).resolve() in Path(path).resolve().parents
    except (OSError, RuntimeError):
        return False


def _example_file(option: str) -> str:
    """A file name to suggest for ``option`` in a message."""
    return {"--onnx": "model.onnx", "--profile-out": "profile.txt"}.get(option, "out.json")


def check_output_file(path: str | os.PathLike | None, option: str,
                      inputs: Iterable[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """Refuse an output file path that cannot be written, before any work is done; ``inputs``
    ((option, path) pairs, e.g. ``("--checkpoint", ckpt)``) are files the command reads, which
    the output must not replace (``eval --json best.pt`` would have put JSON over the weights);
    an input that is a folder (``("--data", root)``) stands for every file under it."""
    if path is None:
        return
    from pathlib import Path

    if isinstance(path, str) and path.endswith(("/", os.sep)):
        # `export --onnx out/` wrote a file named out
        raise TransferError(f"{option} {path} ends in '/', as a folder's name: give a file "
                            f"name, e.g. {path}{_example_file(option)}")
    path = Path(path)
    for what, given in inputs:
        if (given is not None and os.path.isdir(given) and path.is_file() and inside(path, given)
                and not json_object_file(path)):
            # eval --json DATA/basic/EmoLabel/list_patition_label.txt replaced the labels (an
            # earlier --json there, a JSON object, is replaced as anywhere else)
            raise TransferError(
                f"{option} {path} is a file of the {what} folder {given} this command reads: "
                f"writing there would replace it. Give a file name outside it, or a new one")
        if given is not None and same_file(path, given):
            raise TransferError(
                f"{option} {path} is also the {what} file this command reads: writing there "
                f"would replace it. Give another file name, e.g. "
                f"{path.with_name(path.stem + '-out' + ('.json' if option == '--json' else path.suffix))}")
    if path.is_dir():
        raise TransferError(f"{option} {path} is a folder: give a file name, e.g. "
                            f"{path / _example_file(option)}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TransferError(f"{option} {path}: {parent} is a file, not a folder")
            check_writable(parent, option, path)
            break


def check_writable(folder: str | os.PathLike, option: str, path: str | os.PathLike) -> None:
    """Refuse ``option path`` when ``folder`` (the one it goes in, or the nearest of its parents
    that exists, where its folders will be made) takes no new file, before any work is done
    (eval, bench and synth wrote nothing until the end). Tried by making an empty file there
    and removing it again: the permission bits do not tell (root, a read-only mount, /sys)."""
    from pathlib import Path

    from transfer_lib.utils.atomic import temporary_name

    probe = temporary_name(Path(folder) / Path(path).name)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        hint = OS_ERROR_HINTS.get(err.errno, "choose another place")
        raise TransferError(f"{option} {path}: cannot write in {folder} ({err.strerror}: "
                            f"{hint})") from None
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike | None, option: str) -> None:
    """Refuse an output folder path that is a file (or lies under one), or where no file can be
    written (:func:`check_writable`)."""
    if path is None:
        return
    from pathlib import Path

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise TransferError(f"{option} {path}: {p} is a file, not a folder")
            check_writable(p, option, path)
            break


def main(argv: list[str] | None = None) -> int:
    from transfer_lib.utils import kernels

    argv = sys.argv[1:] if argv is None else list(argv)
    # before the commands' modules load torch: its kernels are chosen when it loads
    if "--native" in argv:
        kernels.use_native()
    else:
        problem = kernels.native_env_problem()  # "maybe" was taken as "no" without a word
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        kernels.pin()
    # only the chosen command's module is imported: --help and a mistyped command are instant
    command = chosen_command(argv)
    try:
        # a Ctrl-C while the command's module (torch) loads is one too
        parser = build_parser([command] if command else [])
        args = parser.parse_args(argv)
        return int(args._module.run(args) or 0)
    except TransferError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        message = os_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
