"""Cycles among named entries that name others (component inputs, task parents)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from gridwatch.config.limits import MAX_LISTED


def closing_edges(
    upstream: Mapping[str, Sequence[str]], separator: str
) -> Iterator[tuple[str, str, str]]:
    """Walk ``upstream`` (each name to the names it takes from) depth first, in its order.

    For every reference that closes a cycle, yield the name that holds it, the name it refers
    to and the cycle as text: ``a <sep> b <sep> a``, the middle cut past :data:`MAX_LISTED`
    names. References to names that are not keys are ignored. The walk keeps its own stack, so
    a chain of any length is fine.
    """
    done: set[str] = set()
    for root in upstream:
        if root in done:
            continue
        trail = [root]
        position = {root: 0}  # the names on the current path, and where
        pending = [iter(upstream[root])]
        while pending:
            for name in pending[-1]:
                if name in position:
                    yield trail[-1], name, _cycle_text(trail, position[name], separator)
                elif name in upstream and name not in done:
                    position[name] = len(trail)
                    trail.append(name)
                    pending.append(iter(upstream[name]))
                    break
            else:
                pending.pop()
                del position[trail[-1]]
                done.add(trail.pop())


def _cycle_text(trail: list[str], start: int, separator: str) -> str:
    length = len(trail) - start + 1
    if length <= MAX_LISTED:
        return separator.join([*trail[start:], trail[start]])
    shown = [*trail[start : start + MAX_LISTED - 2], "...", trail[start]]
    return separator.join(shown) + f" ({length} in all)"
