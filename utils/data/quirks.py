"""What a loader did with the lines of the raw files that were not as documented.

Real releases are messier than their documentation: stray whitespace and blank lines, inconsistent case,
typos, numbers that do not parse, parallel files that drift apart. Every loader follows one rule:

- **recovered**: the intent is unambiguous (``" Chair"`` is the class ``chair``; ``"5O"`` is 50): the line
  is fixed, loaded and counted;
- **skipped**: it is not (an answer with no question, a label that is no class): the record is left out and
  counted, with its file, line number and why;
- **noted**: loaded exactly as written, but likely not what was meant (a class named ``NaN``, ids ``P7`` and
  ``p7``, a class with no training rows): kept, counted and logged as a warning, so it is seen.

The :class:`LoadReport` travels with the dataset (``ds.spec.extra["load_report"]``), is logged when the
loader finishes, and is shown by ``utils.data.summary(ds)``. With ``strict=True`` a loader raises a
:class:`~utils.data.schema.DatasetError` listing every line it would have skipped instead.

>>> report = LoadReport("daquar", root="/data/daquar")
>>> report.recovered("qa.894.raw.train.txt", 12, "inconsistent case", "Chair")
>>> report.skipped("qa.894.raw.train.txt", 40, "question names no image", "what is this ?")
>>> report.n_recovered, report.n_skipped
(1, 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from .schema import DatasetError

log = logging.getLogger(__name__)

RECOVERED = "recovered"
SKIPPED = "skipped"
NOTED = "noted"
SHOWN = 5  # line numbers shown per reason in the log and in summary()


@dataclass
class LineIssue:
    """One line that was not as documented. ``line`` is 1-based (a table's header is line 1); 0 means the
    whole file (for example an image file that could not be read)."""

    file: str  # relative to the dataset folder where possible
    line: int
    reason: str  # short and stable: tests and notebooks group by it
    action: str  # "recovered" or "skipped"
    value: str = ""  # the offending text, shortened


@dataclass
class LoadReport:
    """Lines a loader recovered or skipped (see the module docstring). JSON-able via ``to_dict()``."""

    dataset: str
    root: str = ""
    strict: bool = False
    issues: List[LineIssue] = field(default_factory=list)
    rows: int = 0  # rows in the table the loader returned

    def __post_init__(self) -> None:
        self._skip_keys = {(i.file, i.line) for i in self.issues if i.action == SKIPPED}

    # -- recording ---------------------------------------------------------------------------------------

    def recovered(self, file: Any, line: int, reason: str, value: Any = "") -> None:
        """Record that ``line`` of ``file`` was fixed (``reason``) and loaded."""
        self.issues.append(LineIssue(self._name(file), int(line), reason, RECOVERED, _short(value)))

    def skipped(self, file: Any, line: int, reason: str, value: Any = "") -> None:
        """Record that the record starting at ``line`` of ``file`` was left out, and why (the first reason
        given for a line is kept; fixes recorded on a skipped line no longer count as recovered)."""
        key = (self._name(file), int(line))
        if line and key in self._skip_keys:
            return
        self._skip_keys.add(key)
        self.issues.append(LineIssue(key[0], key[1], reason, SKIPPED, _short(value)))

    def noted(self, file: Any, line: int, reason: str, value: Any = "") -> None:
        """Record that ``line`` of ``file`` (0: the whole file) was loaded as written but looks unintended."""
        self.issues.append(LineIssue(self._name(file), int(line), reason, NOTED, _short(value)))

    def _name(self, file: Any) -> str:
        p = Path(str(file))
        if self.root:
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix() if p.is_absolute() else str(file)

    # -- reading -----------------------------------------------------------------------------------------

    def of(self, action: str) -> List[LineIssue]:
        """The issues of ``action``; a recovered line that was skipped after all is not listed."""
        if action == RECOVERED:
            gone = self._skip_keys
            return [i for i in self.issues if i.action == RECOVERED and (i.file, i.line) not in gone]
        return [i for i in self.issues if i.action == action]

    @property
    def n_recovered(self) -> int:
        """Distinct lines fixed (a line fixed for two reasons counts once)."""
        return len({(i.file, i.line) for i in self.of(RECOVERED)})

    @property
    def n_skipped(self) -> int:
        """Records left out."""
        return len(self.of(SKIPPED))

    @property
    def n_noted(self) -> int:
        """Lines (or whole-file facts) loaded as written that look unintended."""
        return len(self.of(NOTED))

    def counts(self, action: str) -> Dict[str, int]:
        """``{reason: number of lines}`` for ``action`` (``"recovered"`` or ``"skipped"``)."""
        out: Dict[str, int] = {}
        for i in self.of(action):
            out[i.reason] = out.get(i.reason, 0) + 1
        return out

    def lines(self, action: str, reason: Optional[str] = None) -> List[Tuple[str, int]]:
        """``(file, line)`` of every issue of ``action`` (and ``reason``), in the order found."""
        return [(i.file, i.line) for i in self.of(action) if reason is None or i.reason == reason]

    def where(self, action: str, reason: Optional[str] = None) -> List[str]:
        """``"file:line"`` (just ``"file"`` for a whole file) of every issue of ``action`` (and ``reason``)."""
        return [f"{f}:{ln}" if ln else f for f, ln in self.lines(action, reason)]

    def table(self) -> pd.DataFrame:
        """One row per (action, reason): how many lines and the first few ``file:line`` places."""
        rows = []
        for action in (SKIPPED, RECOVERED, NOTED):
            for reason, n in self.counts(action).items():
                where = self.where(action, reason)
                rows.append({"action": action, "reason": reason, "lines": n,
                             "first": ", ".join(where[:SHOWN]) + (" ..." if len(where) > SHOWN else "")})
        return pd.DataFrame(rows, columns=["action", "reason", "lines", "first"])

    def headline(self) -> str:
        """``"recovered 3 line(s), skipped 2 record(s)"`` (or ``"every line as documented"``)."""
        if not self.issues:
            return "every line as documented"
        noted = f", noted {self.n_noted} to check" if self.n_noted else ""
        return f"recovered {self.n_recovered} line(s), skipped {self.n_skipped} record(s){noted}"

    def __str__(self) -> str:
        out = f"{self.dataset}: {self.headline()}"
        for action in (SKIPPED, RECOVERED, NOTED):
            for reason, n in self.counts(action).items():
                where = self.where(action, reason)
                out += f"\n  {action} {n}: {reason} ({', '.join(where[:SHOWN])}{' ...' if n > SHOWN else ''})"
        return out

    def _repr_html_(self) -> str:
        head = f"<b>{self.dataset}</b>: {self.headline()}"
        return head if not self.issues else head + self.table().to_html(index=False)

    def to_dict(self) -> Dict[str, Any]:
        """Counts and the first lines per reason (not every issue: a report of a 1M-line file stays small)."""
        return {
            "dataset": self.dataset, "rows": self.rows, "recovered": self.n_recovered, "skipped": self.n_skipped,
            "recovered_by_reason": self.counts(RECOVERED), "skipped_by_reason": self.counts(SKIPPED),
            "first_skipped": self.where(SKIPPED)[: 4 * SHOWN],
            "noted": self.n_noted, "noted_by_reason": self.counts(NOTED), "first_noted": self.where(NOTED)[: 4 * SHOWN],
        }

    # -- finishing ---------------------------------------------------------------------------------------

    def check(self) -> None:
        """Under ``strict``, raise listing every line that was (or would be) skipped."""
        skipped = self.of(SKIPPED)
        if self.strict and skipped:
            shown = "\n".join(f"  {i.file}{f':{i.line}' if i.line else ''}: {i.reason}" + (f": {i.value!r}" if i.value else "")
                              for i in skipped[:20])
            more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            raise DatasetError(
                f"{self.dataset}: strict=True and {len(skipped)} record(s) do not parse:\n{shown}{more}\n"
                "Fix those lines, or load with strict=False to skip them (they are then counted in the load report)."
            )

    def finish(self, rows: int) -> "LoadReport":
        """Check (strict), refuse an empty result, and log what was recovered and skipped."""
        self.rows = int(rows)
        self.check()
        if rows == 0:
            raise DatasetError(f"{self.dataset}: no usable rows under {self.root or 'the dataset folder'}.\n{self}")
        if self.of(SKIPPED) or self.of(NOTED):
            log.warning("%s", self)
        elif self.issues:
            log.info("%s", self)
        return self


def _short(value: Any, width: int = 60) -> str:
    s = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    return s if len(s) <= width else s[: width - 3] + "..."


def attach(spec_extra: Dict[str, Any], report: LoadReport) -> Dict[str, Any]:
    """``spec_extra`` with the report under ``"load_report"`` (what summary() and the notebooks read)."""
    out = dict(spec_extra)
    out["load_report"] = report
    return out


def report_of(ds: Any) -> Optional[LoadReport]:
    """The :class:`LoadReport` of a loaded dataset, or None (a table built by hand has none)."""
    rep = getattr(getattr(ds, "spec", None), "extra", {}).get("load_report")
    return rep if isinstance(rep, LoadReport) else None
