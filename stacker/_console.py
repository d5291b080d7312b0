"""What the command line prints: progress per stage, warnings once each, errors in its words."""

from __future__ import annotations

import re
import sys
import time

from .io import natural_key

# Library argument names, as the command line spells them.
_FLAGS = {
    "align_reference": "--align-ref",
    "bit_depth": "--bit-depth",
    "depth_format": "--depth-format",
    "on_align_fail": "--on-align-fail",
    "order": "--order",
    "skip_damaged": "--skip-bad",
    "tile_size": "--tile",
}
_ASSIGNED = re.compile(rf"\b({'|'.join(_FLAGS)})=(['\"]?)([\w.-]+)\2")
_NAMED = re.compile(rf"\b({'|'.join(_FLAGS)})\b")
# A warning about one file starts with its name (and page, for multi-page TIFFs).
_SUBJECT = re.compile(
    r"^(?P<subject>.+?\.(?:png|jpe?g|tiff?)(?:\[page \d+\])?): (?P<rest>.+)$", re.I
)


def user_words(message: str) -> str:
    """A library message with its argument names replaced by the command line's options.

    Examples
    --------
    >>> user_words("align_reference must be in 0..4; or ask for bit_depth=8")
    '--align-ref must be in 0..4; or ask for --bit-depth 8'
    """
    message = _ASSIGNED.sub(lambda m: f"{_FLAGS[m[1]]} {m[3]}", message)
    return _NAMED.sub(lambda m: _FLAGS[m[1]], message)


class Progress:
    """One self-rewriting stderr line per stage: slices done, elapsed time and ETA.

    Parameters
    ----------
    enabled : bool
        Print anything at all (a terminal, and no ``--quiet``).
    """

    # The line being rewritten, which any other output must end first.
    _open: Progress | None = None

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.start = time.monotonic()
        self.stage: str | None = None

    def __call__(self, done: int, total: int, stage: str = "stacking") -> None:
        if not self.enabled:
            return
        if stage != self.stage and self.stage is not None:
            sys.stderr.write("\n")
        self.stage = stage
        Progress._open = self
        elapsed = time.monotonic() - self.start
        left = f"{elapsed / done * (total - done):5.1f} s left" if done else "   ... s left"
        unit = "outputs" if stage == "writing" else "slices"
        sys.stderr.write(f"\r{stage:>11}: {done}/{total} {unit}, {elapsed:5.1f} s elapsed, {left}")
        sys.stderr.flush()

    @classmethod
    def finish(cls) -> None:
        """End the open progress line, if any, so the next output starts on a line of its own."""
        if cls._open is not None:
            sys.stderr.write("\n")
            cls._open.stage = None
            cls._open = None


class WarningTally:
    """Warnings collected during a run and printed once per condition, with a count.

    A slice is read several times in a run (registration, each pass), and a
    condition such as an alpha channel holds for many files: one line each
    would bury the rest.
    """

    def __init__(self):
        self.conditions: dict[str, list[str]] = {}
        self.whole: dict[str, str] = {}

    def show(self, message, category, filename, lineno, file=None, line=None) -> None:
        """Record a warning (a ``warnings.showwarning`` replacement)."""
        text = str(message)
        match = _SUBJECT.match(text)
        subject, rest = (match["subject"], match["rest"]) if match else (text, text)
        subjects = self.conditions.setdefault(rest, [])
        if subject not in subjects:
            subjects.append(subject)
            self.whole.setdefault(rest, text)

    def flush(self) -> None:
        """Print each condition once and forget them."""
        for rest, subjects in self.conditions.items():
            # Slices are read in worker threads: the order of first sight is not the stack's.
            subjects = sorted(subjects, key=natural_key)
            if len(subjects) == 1:
                sys.stderr.write(f"warning: {user_words(self.whole[rest])}\n")
                continue
            names = ", ".join(subjects[:3]) + (", ..." if len(subjects) > 3 else "")
            sys.stderr.write(f"warning: {user_words(rest)}: {names} ({len(subjects)} files)\n")
        self.conditions.clear()
        self.whole.clear()
