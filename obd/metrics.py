"""The process's counters: a leaf registry that the writer, the HTTP app and the
samplers increment as things happen. `obd.http.metrics` renders it (with gauges
read at scrape time) in Prometheus text format."""

from collections import defaultdict

Labels = tuple[tuple[str, str], ...]


class Registry:
    """Counters by name and labels, incremented from anywhere on the loop."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.help: dict[str, str] = {}

    def inc(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        self.help.setdefault(name, help_text)
        self.counters[name][tuple(sorted(labels.items()))] += value


METRICS = Registry()  # one per process, like the log
