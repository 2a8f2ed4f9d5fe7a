"""Statement PDFs printed from the statement page by headless Chromium (Playwright), byte for byte
the same on a rerun, and the files of a month written so that a killed run can simply rerun.

Why Chromium: the HTML page is the statement; printing it is the only way the PDF cannot drift
from it. Chromium stamps /CreationDate and /ModDate with the wall clock; those are the only bytes
that differ between two prints of the same page (checked by diffing two renders), so both are
set to the month's end. The stamps are rewritten in place with strings of the same length, so the
PDF's cross-reference offsets stay valid. Across Chromium versions the bytes may differ (Skia
output and the /Creator string change): pin the Chromium package where byte-identity across
machines matters.

One browser prints many statements (`StatementPrinter`); launching costs about a second, a page
a few hundred milliseconds.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from multiprocessing.util import Finalize
from pathlib import Path

from flexfleet.settlement.statement import Statement
from services.settlement.statements.render import render_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
_STAMP = re.compile(rb"/(CreationDate|ModDate) \(D:(\d{14})([^)]{0,16})\)")


class ChromiumMissing(RuntimeError):
    """No Chromium where the printer looks for it: install it (apt-get install chromium)."""


def fix_dates(pdf: bytes, when: datetime) -> bytes:
    """Chromium's creation and modification stamps set to `when` (UTC), same length in place."""
    stamp = when.astimezone(UTC).strftime("%Y%m%d%H%M%S").encode()

    def repl(m: re.Match[bytes]) -> bytes:
        new = b"/" + m.group(1) + b" (D:" + stamp + b"+00'00')"
        if len(new) != len(m.group(0)):
            raise ValueError(f"unexpected PDF date format {m.group(0)!r}: cannot rewrite it in place")
        return new

    out, n = _STAMP.subn(repl, pdf)
    if n == 0:
        raise ValueError("no /CreationDate in the PDF: Chromium's output changed, check determinism again")
    return out


class StatementPrinter:
    """One headless Chromium for a batch of statements. Use as a context manager."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        if not os.access(executable, os.X_OK):
            raise ChromiumMissing(f"{executable} not found or not executable: apt-get install -y "
                                  "--no-install-recommends chromium fonts-dejavu-core")
        self.executable = executable
        self._pw = None
        self._browser = None

    def __enter__(self) -> StatementPrinter:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=self.executable, args=CHROMIUM_ARGS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()
        self._browser = self._pw = None

    def pdf(self, html: str, when: datetime) -> bytes:
        """The page printed on A4, its dates set to `when`."""
        if self._browser is None:
            raise RuntimeError("StatementPrinter is not open: use it in a with block")
        page = self._browser.new_page()
        try:
            page.set_content(html, wait_until="load")
            raw = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
        finally:
            page.close()
        return fix_dates(raw, when)

    def statement_pdf(self, statement: Statement, html: str | None = None) -> bytes:
        return self.pdf(html if html is not None else render_html(statement), statement.month.end)


@dataclass(frozen=True)
class StatementFiles:
    html: Path
    pdf: Path


def file_stem(statement: Statement) -> str:
    return f"{statement.owner.owner_id}_{statement.month.label}_v{statement.version}"


def write_statements(statements: Iterable[Statement], directory: Path, workers: int | None = None
                     ) -> Iterator[StatementFiles]:
    """Write each statement's HTML and PDF into `directory`, in the statements' order.

    Each file is written to a temporary name and renamed into place, so a run killed halfway
    leaves whole files or none, and a rerun writes the same bytes over them. With more than one
    worker (default: one per core) the statements are shared out among processes, each with
    its own browser: a statement is about half a second of charts and printing, most of a
    month's settlement of a few hundred owners.
    """
    directory.mkdir(parents=True, exist_ok=True)
    todo = list(statements)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) // MIN_PER_WORKER))
    if workers == 1:
        with StatementPrinter() as printer:
            for s in todo:
                yield _write_one(printer, s, directory)
        return
    StatementPrinter()                                    # fail here, not in every worker, without Chromium
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_open_worker) as pool:
        yield from pool.map(_write_in_worker, todo, repeat(directory), chunksize=4)


MIN_PER_WORKER = 8          # fewer statements than this per process: starting browsers costs more


def _write_one(printer: StatementPrinter, s: Statement, directory: Path) -> StatementFiles:
    html = render_html(s)
    stem = directory / file_stem(s)
    files = StatementFiles(stem.with_suffix(".html"), stem.with_suffix(".pdf"))
    _atomic(files.html, html.encode("utf-8"))
    _atomic(files.pdf, printer.statement_pdf(s, html))
    return files


_worker_printer: StatementPrinter | None = None


def _open_worker() -> None:
    """A worker process's own browser, closed when the pool shuts the worker down."""
    global _worker_printer
    _worker_printer = StatementPrinter().__enter__()
    Finalize(_worker_printer, _worker_printer.__exit__, exitpriority=10)


def _write_in_worker(s: Statement, directory: Path) -> StatementFiles:
    assert _worker_printer is not None
    return _write_one(_worker_printer, s, directory)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic(path: Path, data: bytes) -> None:
    with _replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
