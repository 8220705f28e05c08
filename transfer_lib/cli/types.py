"""Argument types of the command line: every numeric option is checked while it is parsed.

A bad value ends in one line, ``error: --lr nan: expected a finite number in (0, 10], e.g.
1e-3``, and exit status 2 (argparse's ``error: argument --lr: expected ..., got 'nan'`` in a
plain argparse parser), before any work is done. Each type is an object that knows its range
(:class:`Number`, :class:`IntList`, :class:`Counts`), so that ``tests/test_cli_sweep.py`` finds
every numeric option of every command by walking the parsers and tries bad values on it.

Upper bounds stand where a huge value would allocate or hang (a batch of 10**9 images, a
billion epochs); they lie far above any real use. This module imports nothing heavy: the
command line's ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import math

#: Upper bounds of the common options (far above any real use; a huge value would allocate or
#: hang before failing).
MAX_BATCH = 65536
MAX_EPOCHS = 10000
MAX_WORKERS = 1024
MAX_STEPS = 10**9
#: Seeds are those numpy's and torch's generators take from any platform: 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Seconds of a benchmark or a time cap: a day.
MAX_SECONDS = 86400.0
#: Images a synthetic set may hold per split.
MAX_IMAGES = 10**6


class BadValue(argparse.ArgumentTypeError):
    """A value a type of this module refused: ``expected`` says what it takes. argparse shows
    it as ``argument --X: expected ..., got 'TEXT'``; the command line's parser
    (:class:`transfer_lib.cli.Parser`) as ``error: --X TEXT: expected ...``."""

    def __init__(self, expected: str, text: str):
        super().__init__(f"expected {expected}, got {text!r}")
        self.expected, self.text = expected, text


def _fmt(x: float | int) -> str:
    if x == MAX_SEED:
        return "4294967295 (2**32 - 1)"
    return f"{x:g}" if isinstance(x, float) else str(x)


class Number:
    """An argparse type: an ``int`` or a finite ``float`` within ``lo`` .. ``hi`` (either end
    None: open-ended; ``lo_open`` / ``hi_open``: that end excluded). Calling it with the
    option's text returns the number or raises :class:`argparse.ArgumentTypeError` naming the
    allowed range."""

    def __init__(self, kind: type, lo: float | int | None = None, hi: float | int | None = None,
                 *, lo_open: bool = False, hi_open: bool = False, example: str | None = None):
        if kind not in (int, float):
            raise TypeError(f"kind={kind!r} must be int or float")
        self.kind, self.lo, self.hi = kind, lo, hi
        self.lo_open, self.hi_open = lo_open, hi_open
        self.example = example
        self.__name__ = kind.__name__  # argparse names the type by it in some messages

    def expected(self) -> str:
        """What a valid value is: ``an integer, 1 or more and at most 65536``, ``a finite
        number in [0, 1]`` (an interval where a float has both ends)."""
        lo, hi = self.lo, self.hi
        if self.kind is float and lo is not None and hi is not None:
            text = (f"a finite number in {'(' if self.lo_open else '['}{_fmt(lo)}, {_fmt(hi)}"
                    f"{')' if self.hi_open else ']'}")
        else:
            parts = []
            if lo is not None:
                parts.append(f"above {_fmt(lo)}" if self.lo_open else f"{_fmt(lo)} or more")
            if hi is not None:
                parts.append(f"below {_fmt(hi)}" if self.hi_open else f"at most {_fmt(hi)}")
            what = "an integer" if self.kind is int else "a finite number"
            text = f"{what}, " + " and ".join(parts) if parts else what
        return text + (f", e.g. {self.example}" if self.example else "")

    def in_range(self, value: float | int) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip())
        except (ValueError, TypeError, OverflowError):
            value = None
        if value is None or not self.in_range(value):
            raise BadValue(self.expected(), text)
        return value + 0.0 if self.kind is float else value  # -0 is 0: never -0.0 in a record

    def __repr__(self) -> str:
        return f"<{self.expected()}>"


class IntList:
    """An argparse type: comma-separated integers, each an ``item`` (a :class:`Number` of int),
    strictly increasing unless ``increasing`` is False; ``allow_empty``: an empty text is an
    empty list. Returns the text, checked and without spaces (``"15,30"``), so that the
    command's ``run`` reads it as before."""

    def __init__(self, item: Number, *, increasing: bool = True, allow_empty: bool = False,
                 example: str = "15,30"):
        if item.kind is not int:
            raise TypeError("IntList items are integers")
        self.item, self.increasing, self.allow_empty, self.example = (
            item, increasing, allow_empty, example)
        self.__name__ = "int list"

    def expected(self) -> str:
        order = "in increasing order, " if self.increasing else ""
        return (f"comma-separated integers {order}each {self.item.expected()}"
                f"{' (or nothing)' if self.allow_empty else ''}, e.g. {self.example}")

    def __call__(self, text: str) -> str:
        items = [t.strip() for t in text.split(",")]
        if items == [""] and self.allow_empty:
            return ""
        values = []
        for item in items:
            try:
                values.append(self.item(item))
            except argparse.ArgumentTypeError:
                values = None
                break
        if not values or (self.increasing and any(b <= a for a, b in zip(values, values[1:]))):
            raise BadValue(self.expected(), text)
        return ",".join(str(v) for v in values)

    def __repr__(self) -> str:
        return f"<{self.expected()}>"


class Counts:
    """An argparse type: a count N, or NAME=N items with at most one bare N (``3,local=5``),
    each N a ``count`` (:class:`Number` of int). Returns an int for a bare number, else the
    text without spaces; the command checks the names (it knows them)."""

    def __init__(self, count: Number, example: str = "3,local=5"):
        self.count, self.example = count, example
        self.__name__ = "counts"

    def expected(self) -> str:
        return (f"N, or NAME=N items with at most one bare N, each N {self.count.expected()}, "
                f"e.g. {self.example}")

    def __call__(self, text: str) -> int | str:
        parts, names, bare = [], set(), 0
        for item in (t.strip() for t in text.split(",")):
            name, eq, count = item.rpartition("=")
            name = name.strip()
            try:
                n = self.count(count)
            except argparse.ArgumentTypeError:
                n = None
            if n is None or (eq and (not name or name in names)) or (not eq and bare):
                raise BadValue(self.expected(), text)
            names.add(name)
            bare += not eq
            parts.append(f"{name}={n}" if eq else n)
        return parts[0] if parts == [parts[0]] and bare else ",".join(map(str, parts))

    def __repr__(self) -> str:
        return f"<{self.expected()}>"


def positive_int(hi: int) -> Number:
    """1 .. ``hi``."""
    return Number(int, 1, hi)


def nonnegative_int(hi: int) -> Number:
    """0 .. ``hi``."""
    return Number(int, 0, hi)


def positive_float(hi: float | None = None, example: str | None = None) -> Number:
    """A finite number above 0 (at most ``hi``)."""
    return Number(float, 0.0, hi, lo_open=True, example=example)


def nonnegative_float(hi: float | None = None, example: str | None = None) -> Number:
    """A finite number, 0 or more (at most ``hi``)."""
    return Number(float, 0.0, hi, example=example)


#: The common options, shared by the commands.
BATCH_SIZE = positive_int(MAX_BATCH)
EPOCHS = positive_int(MAX_EPOCHS)
#: DataLoader workers: 0 loads in the main process.
WORKERS = nonnegative_int(MAX_WORKERS)
#: Processes or threads of a pool: at least 1.
PROCESSES = positive_int(MAX_WORKERS)
STEPS = positive_int(MAX_STEPS)
SEED = nonnegative_int(MAX_SEED)
#: A probability or share, 0 .. 1.
PROBABILITY = Number(float, 0.0, 1.0)
#: A share strictly between 0 and 1.
OPEN_FRACTION = Number(float, 0.0, 1.0, lo_open=True, hi_open=True)
#: A peak learning rate: above 0, at most 10 (far above any optimiser's).
LEARNING_RATE = positive_float(10.0, example="1e-3")
#: Epochs as a float (warmup): 0 .. MAX_EPOCHS.
EPOCHS_FLOAT = nonnegative_float(float(MAX_EPOCHS))
SECONDS = positive_float(MAX_SECONDS)
#: Any integer (the command checks the range itself).
INTEGER = Number(int)
#: Epochs of a step schedule: increasing, each 1 .. MAX_EPOCHS; empty: no steps.
MILESTONES = IntList(EPOCHS, allow_empty=True, example="15,30")
#: Batch sizes to sweep: increasing, each 1 .. MAX_BATCH; empty: the command's default.
BATCH_SIZES = IntList(BATCH_SIZE, allow_empty=True, example="64,128,256")

#: The types of numeric options, for the parser sweep of the tests (each raises BadValue).
NUMERIC_TYPES = (Number, IntList, Counts)


def retype(parser: argparse.ArgumentParser, dest: str, type=None, choices=None) -> None:
    """Give the option ``dest`` of ``parser`` (declared elsewhere) a ``type`` or ``choices``;
    KeyError when the parser has no such option, so that a renamed option is noticed."""
    for action in parser._actions:
        if action.dest == dest:
            if type is not None:
                action.type = type
            if choices is not None:
                action.choices = choices
            return
    raise KeyError(f"{parser.prog} has no option {dest!r}")
