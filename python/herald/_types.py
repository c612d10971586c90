"""Type aliases shared by herald's modules (annotations only; nothing here runs)."""
from typing import Any, Awaitable, TypeVar, Union

T = TypeVar("T")

JSONDict = dict[str, Any]
"""A JSON object as Python sees it (payloads, metadata, reports)."""

MaybeAwaitable = Union[T, Awaitable[T]]
"""What a hook may return: a value, or (``async def``) an awaitable of it."""
