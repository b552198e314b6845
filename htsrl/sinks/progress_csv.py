"""``progress.csv``: one row per update, the same names as TensorBoard's scalars."""

from __future__ import annotations

import csv

from htsrl.sinks import Report, SinkContext


class ProgressCsv:
    """Appends a row per update. A column that appears later (the first football score, a resumed run
    whose file has other columns) rewrites the file once with the union of the columns, so no value ever
    lands under another column's header. A resumed run first drops the rows after its checkpoint (written
    by an invocation killed later): they come again."""

    def __init__(self, path, start_steps: int = 0, resumed: bool = False):
        self._file = open(path, "a+", newline="")
        self._writer: csv.DictWriter | None = None
        if resumed:
            self._drop_rows_after(start_steps)

    @classmethod
    def open(cls, ctx: SinkContext) -> ProgressCsv:
        return cls(ctx.run_dir.progress, ctx.start_steps, ctx.resumed)

    def write(self, report: Report) -> None:
        row = report.row()
        if self._writer is None:
            self._file.seek(0)
            header = next(csv.reader(self._file), [])
            self._writer = csv.DictWriter(self._file, fieldnames=header or list(row), restval="")
            if not header:
                self._writer.writeheader()
        new = [k for k in row if k not in self._writer.fieldnames]
        if new:
            self._file.seek(0)
            old_rows = list(csv.DictReader(self._file))
            self._file.seek(0)
            self._file.truncate()
            self._writer = csv.DictWriter(self._file, fieldnames=[*self._writer.fieldnames, *new], restval="")
            self._writer.writeheader()
            self._writer.writerows(old_rows)
        self._writer.writerow(row)
        self._file.flush()

    def _drop_rows_after(self, env_steps: int) -> None:
        self._file.seek(0)
        reader = csv.DictReader(self._file)
        rows = list(reader)
        kept = [r for r in rows if int(r["env_steps"]) <= env_steps]
        if len(kept) < len(rows):
            self._file.seek(0)
            self._file.truncate()
            writer = csv.DictWriter(self._file, fieldnames=reader.fieldnames, restval="")
            writer.writeheader()
            writer.writerows(kept)
            self._file.flush()

    def close(self) -> None:
        self._file.close()
