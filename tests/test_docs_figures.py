"""The README quotes the benchmark tables: each figure it gives is in the row it names.

The tables of ``docs/benchmarks/*.md`` are the one home of the measured
figures; the README quotes them only in markdown tables with a ``table``
column, whose cell links the benchmark table of the row. Every other column
of such a quote is named after a column of that benchmark table:

* a key column (``data set``, ``group``, ``ratio``, ``n``, ...: the names
  in ``KEY_COLUMNS``) holds the value of that column in the quoted rows, or
  nothing, which leaves that column unchecked (for a table without it);
* a figure column holds items ``method figure`` separated by ``;``: the
  figure must be one of the numbers of that column in the row of that
  method. A figure column is named as the benchmark column, or as the start
  of its name (``ACC`` for ``ACC median (min-max)``: the first column so
  named); the method is the table's, or the start of exactly one method
  among the rows of the keys.

Outside these tables (and code) the README gives no figures, so none can be
quoted unchecked. Fast: no fitting, only reading files.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KEY_COLUMNS = {"data set", "data", "group", "ratio", "rows", "n", "inputs", "shape", "true k"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A number, with its sign only when the sign does not join two numbers (a range "0.95-0.97").
NUMBER = re.compile(r"(?<![\d.])[-+]?\d[\d,]*(?:\.\d+)?")


def markdown_tables(text):
    """``(header, rows)`` of each markdown table of ``text``, cells stripped."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2 and set("".join(block[1])) <= set("-: "):
            tables.append((block[0], block[2:]))
        block = []
    return tables


def numbers(text):
    return NUMBER.findall(text)


def benchmark_column(header, name):
    """Index of the column ``name`` names: the same name, else the first that starts with it."""
    if name in header:
        return header.index(name)
    for i, column in enumerate(header):
        if column.startswith(name + " "):
            return i
    return None


def quotes():
    """Each README quote row: (row number, its cells by column name, the table's path)."""
    found = []
    for header, rows in markdown_tables(README.read_text()):
        if "table" not in header:
            continue
        for k, row in enumerate(rows):
            cells = dict(zip(header, row))
            link = LINK.search(cells.pop("table"))
            assert link, f"README quote row {row} links no table"
            found.append((f"{row[1] if len(row) > 1 else k}", cells, ROOT / link.group(1)))
    return found


def check_item(path, keys, column, method, figure):
    """Why ``method figure`` is not in ``column`` of the rows of ``keys`` in ``path``, or None."""
    reasons = []
    for header, rows in markdown_tables(path.read_text()):
        index = benchmark_column(header, column)
        if index is None or "method" not in header or not set(keys) <= set(header):
            continue
        keyed = [r for r in rows if all(r[header.index(k)] == v for k, v in keys.items())]
        methods = [r[header.index("method")] for r in keyed]
        chosen = [r for r in keyed if r[header.index("method")] == method]
        if not chosen:
            chosen = [r for r in keyed if r[header.index("method")].startswith(method)]
        if len(chosen) != 1:
            reasons.append(f"{len(chosen)} rows of method {method!r} among {methods}")
            continue
        cell = chosen[0][index]
        if set(numbers(figure)) <= set(numbers(cell)) and numbers(figure):
            return None
        reasons.append(f"{figure!r} is not in {header[index]!r}: {cell!r}")
    return "; ".join(reasons) or f"no table of {path.name} has the columns {column!r}, {keys}"


def test_the_readme_quotes_figures_from_the_tables():
    failures, checked = [], 0
    for name, cells, path in quotes():
        assert path.is_file() and path.parent == ROOT / "docs" / "benchmarks", path
        keys = {k: v for k, v in cells.items() if k in KEY_COLUMNS and v}
        for column, cell in cells.items():
            if column in KEY_COLUMNS or not cell:
                continue
            for item in cell.split(";"):
                match = re.fullmatch(r"(.+?)\s+([-+]?\d[\d,.]*)", item.strip())
                assert match, f"README, {name}: {item!r} is not 'method figure'"
                reason = check_item(path, keys, column, *match.groups())
                checked += 1
                if reason:
                    failures.append(f"README, {name}, {column}: {item.strip()!r}: {reason}")
    assert not failures, "\n".join(failures)
    assert checked >= 30  # the quotes were found and read


def prose(text):
    """The README without code, links' targets and the tables of quotes."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))


@pytest.mark.parametrize("pattern", [
    r"\d\.\d",  # decimals: accuracies, times, ratios
    r"\d\s*(?:s|ms|seconds?|minutes?|hours?)\b",  # durations
    r"\d\s*%",
    r"\d\s*(?:x|times)\s+(?:faster|slower|as)",
])
def test_the_readme_gives_figures_only_in_checked_quotes(pattern):
    stray = [line for line in prose(README.read_text()).splitlines() if re.search(pattern, line)]
    assert not stray, stray


def test_the_check_catches_a_figure_missing_from_its_row():
    tabular = ROOT / "docs" / "benchmarks" / "tabular.md"
    assert check_item(tabular, {"data set": "iris"}, "ARI", "IICClustering", "0.922") is None
    assert check_item(tabular, {"data set": "wine"}, "ARI", "IICClustering", "0.922")
    assert check_item(tabular, {"data set": "iris"}, "ARI", "KMeans", "0.922")
    assert check_item(tabular, {"data set": "iris"}, "ARI min", "IICClustering", "0.922") is None
    assert check_item(tabular, {"data set": "iris"}, "NMI", "IICClustering", "0.922")
    # "IIC" starts three methods of the row: ambiguous, so refused.
    assert check_item(tabular, {"data set": "iris"}, "ARI", "IIC", "0.922")
