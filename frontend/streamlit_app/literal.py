"""Strings from outside the app (the model, the person, the backend) shown as text, never parsed.

A processed document can carry Markdown or HTML: an image the browser fetches as soon as it is
shown (a known way for a prompt injection to send data to any address), a link dressed as
something else, a heading that takes over the page. Every such string goes through this module:

- `show_text` for a block of its own: `st.text`, which Streamlit never parses.
- `escape_markdown` where Streamlit takes nothing but Markdown (alert bodies, badges): every
  ASCII punctuation character is backslash-escaped, which CommonMark allows for all of them, and
  what GitHub-flavoured Markdown turns into a link by itself (a URL, `www.`, an e-mail address)
  goes into a code span, because no backslash stops that.
"""

import re

import streamlit as st

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_AUTOLINKED = re.compile(r"\S*(?:://|www\.|@)\S*", re.IGNORECASE)
_BACKTICKS = re.compile(r"`+")


def show_text(body: str) -> None:
    st.text(body)


def escape_markdown(text: str) -> str:
    pieces: list[str] = []
    end = 0
    for match in _AUTOLINKED.finditer(text):
        pieces += [_escape(text[end : match.start()]), _code_span(match.group())]
        end = match.end()
    pieces.append(_escape(text[end:]))
    return "".join(pieces)


def _escape(text: str) -> str:
    return _PUNCTUATION.sub(r"\\\1", text)


def _code_span(text: str) -> str:
    """A fence longer than any run of backticks inside; the padding spaces are not shown."""
    fence = "`" * (max(map(len, _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence} {text} {fence}"
