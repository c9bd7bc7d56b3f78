"""Reusable blocks of the in-context neural operators."""

from .context import ContextLayout, pack_context, unpack_context, pack_responses, unpack_responses
