"""Secrets and internals off screen: URLs without credentials, short error texts for people.

    redact_url("redis://:s3cret@10.0.0.5:6379/0")   # "redis://:***@10.0.0.5:6379/0"
    redact_text("ConnectError: http://u:pw@h/v1?api_key=k")   # every URL and key=value masked
    user_error(log, exc, "the segment data could not be read")   # short text; details to the log

What a user sees says what failed and what to do; the exception's class, its message, internal
URLs and the traceback go to the server log, with credentials removed, for whoever runs the server.
"""

from __future__ import annotations

import logging
import re
import traceback
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters and key=value pairs whose value is a secret (api_key, access_token, password, ...).
_SECRET_NAME = (
    r"(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth|signature|sig|key)"
)
_SECRET_PARAM = re.compile(rf"(?:^|[_-]){_SECRET_NAME}$|^{_SECRET_NAME}(?:[_-]|$)", re.IGNORECASE)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s'\"<>()\[\]{}]+")
_KEY_VALUE = re.compile(rf"\b([A-Za-z_]*{_SECRET_NAME}[A-Za-z_]*)(\s*[=:]\s*)([^\s,;&'\"]+)", re.IGNORECASE)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
_API_KEY_LIKE = re.compile(r"\b(sk|pk|rk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_\-]{12,}")

DETAILS_IN_LOG = "details are in the server log"


def _redact_userinfo(userinfo: str) -> str:
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}"
    # A lone user part is often a token (https://TOKEN@host): mask it too.
    return MASK


def redact_url(url: str) -> str:
    """The URL with its password (or lone user token) and secret query parameters replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL we can parse: mask anything that looks like userinfo
        return re.sub(r"//[^/@\s]*@", f"//{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{_redact_userinfo(userinfo)}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(name) for name, _ in pairs):
            query = urlencode([(n, MASK if _SECRET_PARAM.search(n) else v) for n, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Free text (an exception message, a traceback) with every URL redacted and secrets masked."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _API_KEY_LIKE.sub(lambda m: f"{m.group(1)}-{MASK}", text)


def error_detail(exc: BaseException, *, with_traceback: bool = True) -> str:
    """What the server log keeps of an error: its class, message and traceback, credentials removed."""
    if with_traceback:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return redact_text(detail.rstrip())


def log_error(
    log: logging.Logger,
    what: str,
    exc: BaseException,
    *,
    level: int = logging.ERROR,
    with_traceback: bool = True,
) -> None:
    """Log `what` with the error's details (credentials removed)."""
    log.log(level, "%s\n%s", what, error_detail(exc, with_traceback=with_traceback))


def user_error(
    log: logging.Logger, exc: BaseException, what: str, hint: str = "try again in a moment"
) -> str:
    """Log the details of `exc` and return the short text a user sees: `what; hint (details ...)`."""
    log_error(log, what, exc)
    return f"{what}; {hint} ({DETAILS_IN_LOG})"
