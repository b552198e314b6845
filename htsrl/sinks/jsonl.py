"""``progress.jsonl`` (``--report-to jsonl``): one JSON object per update, for tools that read JSON lines
(``jq``, pandas' ``read_json(lines=True)``). The worked example of a report sink (docs/ARCHITECTURE.md,
"Extending htsrl"): a class with ``open``, ``write`` and ``close``, and one line in ``htsrl.sinks.SINKS``."""

from __future__ import annotations

import json

from htsrl.sinks import Report, SinkContext, _is_nan


class JsonLines:
    def __init__(self, path, start_steps: int = 0, resumed: bool = False):
        kept = []
        if resumed and path.exists():  # the lines after the checkpoint come again
            for line in path.read_text().splitlines():
                try:
                    point = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill or a full disk: nothing after it counts
                    break
                if point["env_steps"] > start_steps:
                    break
                kept.append(line + "\n")
        self._file = open(path, "w")  # a new run starts the file anew
        self._file.write("".join(kept))

    @classmethod
    def open(cls, ctx: SinkContext) -> JsonLines:
        return cls(ctx.run_dir.progress_jsonl, ctx.start_steps, ctx.resumed)

    def write(self, report: Report) -> None:
        line = {"env_steps": report.env_steps, "updates": report.updates, "wall_time_s": report.wall_time_s}
        line.update({k: None if _is_nan(v) else v for k, v in report.scalars.items()})  # JSON has no NaN
        line["episodes"] = {"returns": report.episodes.returns, "steps": report.episodes.steps}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
