"""What several commands share: options that a group and its actions both accept, examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import click
from click.core import ParameterSource

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

PATH = click.Path(path_type=Path)
"""A path argument or option, given to the command as a :class:`~pathlib.Path`."""


class SharedOption(Generic[T]):
    """An option of a group that each of its actions accepts too.

    ``gridwatch tasks --url U list`` and ``gridwatch tasks list --url U`` mean the same; when
    both give it, the one after the action wins. Decorate the group and every action with the
    same instance, and read the value with :meth:`value` in the action.
    """

    def __init__(self, *decls: str, default: T, **attrs: Any) -> None:
        self.decls = decls
        self.default = default
        self.attrs = attrs
        self.key = f"{__name__}.{id(self)}"

    def __call__(self, command: FC) -> FC:
        """Add the option to ``command`` (a group or one of its actions)."""
        add = click.option(
            *self.decls,
            default=self.default,
            expose_value=False,
            callback=self._remember,
            **self.attrs,
        )
        return add(command)

    def _remember(self, ctx: click.Context, param: click.Parameter, value: Any) -> None:
        # ctx.meta is one dict for the whole chain of contexts: the group's and the action's.
        given = ctx.get_parameter_source(param.name or "") is not ParameterSource.DEFAULT
        if given or self.key not in ctx.meta:
            ctx.meta[self.key] = value

    def value(self) -> T:
        """The value given to the group or the action (the action's when both), else the default."""
        return cast(T, click.get_current_context().meta.get(self.key, self.default))


def examples(*lines: str) -> str:
    """An epilog listing example invocations, kept as written by the help formatter."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
