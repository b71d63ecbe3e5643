"""The probe's printed lines, kept for ``probe.txt``."""

LINES: list[str] = []


def say(line: str) -> None:
    LINES.append(line)
    print(line, flush=True)
