"""One letter, one meaning: every chapter's mathematics checked against the preface's notation table.

The table of ``book/src/01_preface.py`` (section "Notation") is parsed into symbol -> meaning. The
mathematics of every chapter is read from its markdown cells (``$...$`` and ``$$...$$``; code spans
and fenced code blocks are left out) and split into symbols: a Latin or Greek letter, or a
calligraphic capital, with its decoration (``\\bar A``, ``\\tilde F``, ``\\hat y``, ``Z'``,
``j^\\star``). Upright names (``\\mathrm{acc}``, ``\\text{in}``) are words, not symbols, and a few
labelled symbols (``d_h``, ``W^{qkv}``, ``W_p``, ...) are read whole, as the table lists them.
Two checks follow:

1. **Every symbol is in the table.** A letter the table does not define is new notation (add it to
   the table, with one meaning) or an old clash coming back: $H$ or $W$ for the grid's height and
   width (the grid is $G \\times G$), $w$ for a weight vector ($W_{i,2}$), $l$ for a block
   ($\\ell$), $d$ for MAD's coin ($\\delta$), $F'$ for the weighted features ($\\tilde F$), $a$
   or $n$ for an accuracy and a test-set size.
2. **No table symbol is used with another meaning.** For the letters that had more than one,
   ``FORBIDDEN`` lists what the old meanings looked like: a pattern in the formula (``(h, w)`` as
   a position, ``\\arg\\max_k``, ``P(...)`` as a function, ``D_\\text{in}``) or a word right beside
   the formula (``loss $L$``, ``test set $T$``, ``seed $s$``, ``token $t$``, ``channel $c$``).

The table must also define each symbol once, and list only symbols some chapter uses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book" / "src").glob("[0-9][0-9]_*.py"))
PREFACE = ROOT / "book" / "src" / "01_preface.py"

# Greek letters and \ell are symbols; \pi is the constant, not a symbol.
GREEK = ("alpha beta gamma delta epsilon varepsilon zeta eta theta iota kappa lambda mu nu xi "
         "rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma "
         "Phi Psi Omega ell").split()
# Symbols whose sub- or superscript is a name, not an index: read whole.
LABELLED = ("d_h", "W^{qkv}", "W^o", "b^o", "W_p", "b_p", "W_y", "b_y")

# What an old meaning of a table symbol looked like. "math": a regular expression on the formula
# that contains the symbol; "near": words within NEAR characters of the formula, in the prose.
NEAR = 45
FORBIDDEN: dict[str, dict[str, list[str]]] = {
    "L": {"near": ["loss"]},  # a loss is \mathcal{L}; L counts blocks
    "h": {"math": [r"[\[(]\s*h\s*,"], "near": ["height"]},  # a row index is u
    "W": {"math": [r"\\times\s*W\b", r"\bHW\b"], "near": ["width"]},  # the grid is G x G
    "T": {"near": ["test", "set"]},  # the test set is \mathcal{D}
    "P": {"math": [r"(?<![\\\w])P\s*\("], "near": ["parameter", "parameters"]},
    "j": {"math": [r"j\s*\\sim", r"\{1,\s*\\dots,\s*B\}"],
          "near": ["branch", "map", "lanet"]},  # the dropped branch is i^\star
    "k": {"math": [r"_\{?k\b", r"k\s*\\times\s*k", r"\\lfloor\s*k"],
          "near": ["class", "kernel", "branch"]},
    "s": {"math": [r"s_d", r"_s\s*(?:=|-)"], "near": ["seed", "standard deviation"]},
    "t": {"near": ["token"]},  # a token index is \tau; t is Student's quantile
    "c": {"math": [r"\\binom"], "near": ["channel", "positions", "meet"]},
    "b": {"near": ["accuracy", "accuracies"]},
    "x": {"near": ["map of", "channels"]},  # a unit's input map is X
    "n": {"near": ["faces", "measured on"]},  # a test-set size is |\mathcal{D}|
    "p": {"near": ["parameter"]},
    "D": {"math": [r"D_\{?\\(?:text|mathrm)"]},  # a layer's widths are C_in, C_out
    "u": {"math": [r"u\s*=\s*\\mathrm\{round\}"], "near": ["top"]},  # the top region's size is M
    "v": {"near": ["value", "values"]},  # values are rows of V
    "q": {"near": ["query", "queries"]},
}


# ---------------------------------------------------------------------------- reading the book
def markdown_cells(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of every markdown cell of a percent-format source."""
    cells, current, start = [], None, 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("# %%"):
            if current is not None:
                cells.append((start, "\n".join(current)))
            current = [] if "[markdown]" in line else None
            start = number + 1
        elif current is not None:
            current.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    if current is not None:
        cells.append((start, "\n".join(current)))
    return cells


def blank(match: re.Match) -> str:
    """The match replaced by spaces, newlines kept, so that offsets and line numbers hold."""
    return re.sub(r"[^\n]", " ", match.group(0))


MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$", re.S)


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, formula) of every formula of a markdown text, code left out."""
    text = re.sub(r"```.*?```", blank, text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", blank, text)
    return [(m.start(), m.end(), m.group(1) or m.group(2)) for m in MATH.finditer(text)]


def chapter_math(path: Path) -> list[tuple[int, str, str]]:
    """(line, formula, prose around it) of a chapter; the preface's notation table left out."""
    out = []
    for start, text in markdown_cells(path):
        if path == PREFACE and "| symbol | meaning |" in text:
            text = re.sub(r"^\|.*$", blank, text, flags=re.M)
        for begin, end, formula in math_spans(text):
            line = start + text[:begin].count("\n")
            out.append((line, formula, text[max(0, begin - NEAR):end + NEAR]))
    return out


# ------------------------------------------------------------------------------------ symbols
def normalise(formula: str) -> str:
    """The formula with words, spacing and layout commands removed, and labelled symbols,
    calligraphic letters and stars turned into single marks."""
    f = re.sub(r"\\(?:begin|end)\{[^{}]*\}", " ", formula)
    f = re.sub(r"\\(?:mathrm|text|textrm|operatorname|mathbf|mathbb)\s*\{[^{}]*\}", " □ ", f)
    f = re.sub(r"([_^])\{\s*(\\?[A-Za-z]+|\\star)\s*\}", r"\1\2", f)  # x_{i} -> x_i
    f = re.sub(r"\\(bar|hat|tilde)\s*\{\s*(\\?[A-Za-z]+)\s*\}", r"\\\1 \2", f)  # \bar{A}
    f = re.sub(r"\^\s*\\star", "⋆", f)
    f = re.sub(r"\\mathcal\s*\{\s*([A-Za-z])\s*\}", r"⟨mathcal{\1}⟩", f)
    for label in LABELLED:
        flat = label.replace("{", "").replace("}", "")
        f = re.sub(re.escape(flat) + r"(?![A-Za-z])", f"⟨{label}⟩", f)
    keep = set(GREEK) | {"bar", "hat", "tilde"}
    f = re.sub(r"\\([A-Za-z]+)", lambda m: m.group(0) if m.group(1) in keep else " ", f)
    return re.sub(r"\\[^A-Za-z]", " ", f)


SYMBOL = re.compile(r"(?P<deco>\\(?:bar|hat|tilde)\s*)?"
                    r"(?P<base>⟨[^⟩]+⟩|\\(?:" + "|".join(GREEK) + r")(?![A-Za-z])|[A-Za-z])"
                    r"(?P<mark>'|⋆)?")


def symbols(formula: str) -> list[str]:
    """The symbols of a formula, e.g. ``\\bar A``, ``j^\\star``, ``W^{qkv}``, ``\\mathcal{D}``."""
    out = []
    for m in SYMBOL.finditer(normalise(formula)):
        deco = m.group("deco").strip() + " " if m.group("deco") else ""
        mark = {"'": "'", "⋆": "^\\star", None: ""}[m.group("mark")]
        base = m.group("base").strip("⟨⟩").replace("mathcal{", "\\mathcal{")
        out.append(deco + base + mark)
    return out


def notation_table(path: Path = PREFACE) -> dict[str, str]:
    """symbol -> meaning, from the preface's table: the first symbol of each formula in a row's
    first cell (``$A_i$`` defines $A$, ``$m_i$, $g_j$`` defines $m$ and $g$)."""
    text = next(t for _, t in markdown_cells(path) if "| symbol | meaning |" in t)
    table: dict[str, str] = {}
    for row in re.findall(r"^\|(.+?)\|(.+)\|\s*$", text, flags=re.M):
        cell, meaning = (c.strip() for c in row)
        if cell in ("symbol", "---"):
            continue
        for _, _, formula in math_spans(cell):  # $A_i$ defines A; its index i has a row
            if not symbols(formula):  # an operator: $\odot$
                continue
            symbol = symbols(formula)[0]
            assert table.get(symbol, meaning) == meaning, f"{symbol} is defined twice"
            table[symbol] = meaning
        for _, _, formula in math_spans(meaning):  # W^o, b_p, ... named in the meaning
            for symbol in set(symbols(formula)) & set(LABELLED):
                table[symbol] = meaning
    return table


def violations(path: Path, table: dict[str, str]) -> list[str]:
    """Every use of a symbol in ``path`` that the table does not allow, as 'file:line: why'."""
    found = []
    for line, formula, near in chapter_math(path):
        where = f"book/src/{path.name}:{line}: ${formula.strip()}$"
        for symbol in dict.fromkeys(symbols(formula)):
            if symbol not in table:
                found.append(f"{where}: {symbol} is not in the notation table")
                continue
            rules = FORBIDDEN.get(symbol, {})
            for pattern in rules.get("math", []):
                if re.search(pattern, formula):
                    found.append(f"{where}: {symbol} used as /{pattern}/, not as "
                                 f"'{table[symbol]}'")
            for word in rules.get("near", []):
                if re.search(rf"\b{re.escape(word)}\b", near, flags=re.I):
                    found.append(f"{where}: {symbol} next to '{word}', not "
                                 f"'{table[symbol]}'")
    return found


# ---------------------------------------------------------------------------------------- tests
def test_the_tokenizer_reads_symbols_as_the_book_writes_them():
    assert symbols(r"\bar A = \max_i m_i A_i") == ["\\bar A", "i", "m", "i", "A", "i"]
    assert symbols(r"\tilde F = F \odot \bar{A}") == ["\\tilde F", "F", "\\bar A"]
    assert symbols(r"Z'_\ell = Z_{\ell-1} + \mathrm{MHSA}(Z)") == ["Z'", "\\ell", "Z", "\\ell", "Z"]
    assert symbols(r"[Q_j \; K_j] = Z\,W^{qkv}_j, \; d_h^{-1/2}, \; W^{o} + b^o") == [
        "Q", "j", "K", "j", "Z", "W^{qkv}", "j", "d_h", "W^o", "b^o"]
    assert symbols(r"g_j = 1 - \delta\,[\,j = j^\star\,]") == ["g", "j", "\\delta", "j", "j^\\star"]
    assert symbols(r"\mathcal{D}_c, \mathrm{acc}, C_{\text{in}}, z_{\mathrm{cls}}") == [
        "\\mathcal{D}", "c", "C", "z"]
    assert symbols(r"\begin{cases} m_i & \text{if } i \\ 0 \end{cases}") == ["m", "i", "i"]


def test_the_table_is_parsed_and_defines_the_core_symbols():
    table = notation_table()
    assert len(table) >= 40
    for symbol in ("n", "S", "C", "G", "F", "\\tilde F", "B", "A", "\\bar A", "D", "N", "L",
                   "\\ell", "h", "j", "d_h", "Q", "K", "V", "\\mathcal{D}", "\\mathcal{L}"):
        assert symbol in table, symbol


def test_every_table_symbol_is_used_somewhere():
    used = {s for path in SOURCES for _, formula, _ in chapter_math(path) for s in symbols(formula)}
    assert sorted(set(notation_table()) - used) == []


def test_the_checks_catch_the_clashes_the_review_found(tmp_path):
    """Each clash the review listed, as the chapters once wrote it, is caught."""
    table = notation_table()
    old = {
        "loss": r"a random linear loss $L$ on $F'$",  # L, and F' for \tilde F
        "row": r"at each position $(h, w)$ of the grid",  # h, w
        "weights": r"$w_{i,2}^\top \,\mathrm{ReLU}(W_{i,1} F[:, h, w])$",
        "test": r"the **accuracy** on the test set $T$, the share",
        "params": r"$P(c_{\text{in}}, c_{\text{out}}) = 2c_{\text{in}}$",
        "coin": r"$d \sim \mathrm{Bernoulli}(p_1), j \sim \mathrm{Uniform}\{1, \dots, B\}$",
        "argmax": r"$\arg\max_k \hat y_k = y$",
        "kernel": r"$\mathrm{conv}^{k\times k}_{s}$ is a $k \times k$ convolution",
        "seed": r"Seed $s$ fixes the initial weights",
        "sd": r"where $s_d$ is the sample standard deviation",
        "token": r"now read as a token index $t \in \{0, \dots, h-1\}$",
        "channel": r"PReLU's learned slope for channel $c$",
        "overlap": r"meet in $c$ positions with the hypergeometric probability",
        "accuracies": r"with $b_s$ and $a_s$ their test accuracies",
        "map": r"With $x$ a map of $c_{\text{in}}$ channels",
        "faces": r"an accuracy measured on $n$ faces",
        "widths": r"from $D_\text{in}$ to $D_\text{out}$ features",
        "block": r"attention weights of head $j$ in block $l$",
        "grid": r"$F \in \mathbb{R}^{C \times H \times W}$",
        "top": r"the $u = \mathrm{round}(\kappa N)$ positions",
        "difference": r"$d_s = b_s - a_s$",
    }
    for name, text in old.items():
        path = tmp_path / f"{name}.py"
        path.write_text(f"# %% [markdown]\n# {text}\n")
        assert violations(path, table), f"not caught: {text}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_chapter_follows_the_notation_table(path):
    found = violations(path, notation_table())
    assert not found, "\n".join(found)


def test_symbols_used_in_several_chapters_are_in_the_table():
    """Implied by the test above, stated on its own: the table is the book's shared notation."""
    chapters = defaultdict(set)
    for path in SOURCES:
        for _, formula, _ in chapter_math(path):
            for symbol in symbols(formula):
                chapters[symbol].add(path.name[:2])
    shared = {s for s, c in chapters.items() if len(c) > 1}
    assert sorted(shared - set(notation_table())) == []
