"""Redacting URLs and DSNs before they are recorded.

A URL is recorded as text, so the value capture's per-key redaction never sees its parts:
the password of ``https://user:secret@host`` and ``?api_key=...`` must be hidden here.
Userinfo (user *and* password: a user name alone is often a token, as in
``https://ghp_xxx@github.com``) becomes ``[redacted]``; a query parameter whose name is
sensitive (the value capture's list, plus a few names only URLs use) keeps its name and
loses its value. A URL that cannot be parsed is recorded as a marker, never as itself.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from ascope._values import REDACTED, is_sensitive

__all__ = ["redact_url"]

# Query parameter names that carry secrets in URLs but would not match the value
# capture's substring list (signed URLs, OAuth codes, bare "key=" API keys).
_URL_SENSITIVE = frozenset({
    "key", "sig", "signature", "code", "auth", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential", "access_key",
})

_MAX_URL = 2048


def _sensitive_param(name: str) -> bool:
    return name.lower() in _URL_SENSITIVE or is_sensitive(name)


def _redact_pairs(text: str) -> str:
    """``name=value`` pairs (``&`` or ``;`` separated) with sensitive values replaced.

    Pieces are kept as they were written (no decoding and re-encoding), only the names
    are decoded to be checked.
    """
    pieces = re.split(r"([&;])", text)
    for index in range(0, len(pieces), 2):
        name, equals, _ = pieces[index].partition("=")
        if equals and _sensitive_param(unquote_plus(name)):
            pieces[index] = name + "=" + REDACTED
    return "".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with userinfo and the values of sensitive query parameters redacted.

    The fragment is treated like the query: OAuth's implicit flow puts tokens there.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = REDACTED + "@" + netloc.rpartition("@")[2]
        query = _redact_pairs(parts.query) if "=" in parts.query else parts.query
        fragment = _redact_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
        text = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    except Exception:  # a URL we cannot take apart could hide anything: record none of it
        return "[unparsable url]"
    return text if len(text) <= _MAX_URL else text[:_MAX_URL] + "..."
