"""How long a provider task takes, and what its status says meanwhile.

Wan 2.5 image tasks take about 20-60 s. A task here waits `queued` seconds at the
provider (status pending, progress 0), then runs to `duration` seconds after the
submit with progress rising along a mildly non-linear curve (exponent `gamma`
drawn per task), reported truncated to whole percents as providers do.

Kinds of task (chosen by a tag in the prompt, so both processes agree):
- normal: duration 20 + 40 * Beta(2, 3) s (20-60 s, mean 36 s, mode 33 s);
- fill: already part-way through, for starting a benchmark in steady state: the
  time left is uniform over 1-60 s, as it is for jobs caught mid-flight;
- probe: refused at submit (HTTP 400), for requests whose only purpose is to
  measure their acknowledgement: the job ends at once instead of adding to the load.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

KINDS = ("normal", "fill", "probe")
_TAG = re.compile(r"\[bench:(normal|fill|probe):(\d+)\]")


@dataclass(frozen=True)
class Timing:
    queued: float  # seconds pending at the provider
    duration: float  # seconds from submit to completion
    gamma: float  # progress curve: (running fraction) ** gamma

    def progress(self, elapsed: float) -> int | None:
        """Whole percent done `elapsed` s after the submit; None once finished."""
        if elapsed >= self.duration:
            return None
        if elapsed <= self.queued:
            return 0
        fraction = (elapsed - self.queued) / (self.duration - self.queued)
        return min(99, int(100 * fraction**self.gamma))


def draw(rng: random.Random, kind: str) -> Timing:
    if kind == "probe":
        return Timing(queued=0.0, duration=0.0, gamma=1.0)  # never runs: refused
    queued = rng.uniform(0.0, 3.0)
    gamma = rng.uniform(0.8, 1.25)
    if kind == "fill":
        duration = rng.uniform(1.0, 60.0)
        return Timing(min(queued, duration / 2), duration, gamma)
    duration = 20.0 + 40.0 * rng.betavariate(2.0, 3.0)
    return Timing(queued, duration, gamma)


def tag(kind: str, serial: int) -> str:
    return f"[bench:{kind}:{serial}]"


def parse_tag(prompt: str) -> tuple[str, int] | None:
    match = _TAG.search(prompt)
    return (match.group(1), int(match.group(2))) if match else None
