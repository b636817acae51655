"""``openai``: text embeddings from the OpenAI embeddings API (or a compatible server).

``create("openai:text-embedding-3-small", dimensions=None, base_url=None, max_retries=6)``

- The key comes from ``OPENAI_API_KEY`` (environment or ``.env``, via ``utils.config.get_setting``); it
  is never printed, logged or stored. ``base_url`` points at a compatible server (Azure-style proxies,
  vLLM, a local stub); such servers may need no key.
- Requests are packed within the API's limits: at most 2,048 inputs and about 300k tokens a request;
  inputs longer than 8,192 tokens are truncated with a warning. Tokens are counted with ``tiktoken`` when
  it is installed and its encoding is available, else estimated conservatively (3 bytes a token).
  The ``batch_size`` of ``encode`` does not apply: requests are as large as the limits allow.
- ``dimensions`` (text-embedding-3 models) shortens the vectors server-side.
- 429 and 5xx (and dropped connections) are retried with exponential backoff (``retry-after`` honoured);
  401/403 stop at once with a clear message; other 4xx are reported with the server's message.
- Every answer is checked: one vector per input, all of one width, and that width is the one asked for
  (``dimensions``), the model's known size, or the width of earlier answers; anything else is an error.
- Secrets never leave: a ``base_url`` with ``user:password@`` or a key in its query string is stored,
  shown and logged redacted (the real one is used for requests only), and every error text is scrubbed
  of the API key, bearer tokens and URL credentials before it is raised or logged (never chained).
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from . import FAMILIES
from .base import Extractor, ExtractorError, progress

log = logging.getLogger(__name__)

MAX_INPUTS = 2048  # inputs per request
MAX_REQUEST_TOKENS = 300_000  # tokens per request (all inputs together)
MAX_INPUT_TOKENS = 8192  # tokens per input
KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class _Tokens:
    """Counts and truncates tokens: tiktoken's cl100k_base when available, else a safe byte estimate."""

    BYTES_PER_TOKEN = 3  # cl100k averages ~4.5 bytes a token on English; 3 errs on the safe side

    def __init__(self):
        self.enc = None
        try:
            import tiktoken

            self.enc = tiktoken.get_encoding("cl100k_base")
        except Exception:  # noqa: BLE001 -- not installed, or its file cannot be fetched offline
            log.debug("tiktoken unavailable: estimating tokens from bytes")

    def count(self, text: str) -> int:
        if self.enc is not None:
            return len(self.enc.encode(text, disallowed_special=()))
        return -(-len(text.encode("utf-8")) // self.BYTES_PER_TOKEN)

    def truncate(self, text: str, limit: int) -> str:
        if self.enc is not None:
            return self.enc.decode(self.enc.encode(text, disallowed_special=())[:limit])
        return text.encode("utf-8")[: limit * self.BYTES_PER_TOKEN].decode("utf-8", errors="ignore")


SECRET_PARAMS = re.compile(r"(key|token|secret|password|passwd|pwd|sig|signature|auth|credential)", re.I)


def redact_url(url: str) -> str:
    """``url`` with its user name, password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without the given ``secrets``, bearer tokens, ``sk-...`` keys or URL credentials."""
    for secret in sorted((x for x in secrets if x and len(x) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"(?i)(bearer\s+)[^\s\"',;}]+", r"\1***", text)
    text = re.sub(r"\bsk-[A-Za-z0-9_\-]{6,}", "sk-***", text)
    text = re.sub(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+", r"\1***", text)
    return re.sub(r"(https?://)[^/\s@]+@", r"\1***@", text)


class _RedactingFilter(logging.Filter):
    """Scrubs the secrets this process handed to an OpenAI client from the log records of the HTTP libraries
    under it (httpx logs every request's full URL at INFO: ``user:password@`` and ``?api-key=`` included)."""

    secrets: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- a malformed record: leave it to logging
            return True
        clean = redact(message, sorted(self.secrets))
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter()
# the client stack's loggers (httpx / httpx2, httpcore / httpcore2, openai, and their children, named per
# version): a logger's filters see only its own records, so every existing logger under these is guarded
HTTP_LOGGER_PREFIXES = ("httpx", "httpcore", "openai", "urllib3", "requests")


def guard_http_logs(secrets: Sequence[str]) -> None:
    """Redact ``secrets`` (and any bearer token / URL credentials) in the HTTP libraries' log lines."""
    _FILTER.secrets.update(x for x in secrets if x and len(x) >= 4)
    names = set(HTTP_LOGGER_PREFIXES) | {n for n in list(logging.root.manager.loggerDict)
                                         if n.split(".")[0].startswith(HTTP_LOGGER_PREFIXES)}
    for name in sorted(names):
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


def split_query(url: str) -> Tuple[str, Dict[str, str]]:
    """``https://host/v1?api-key=K&x=1`` -> (``https://host/v1``, ``{"api-key": "K", "x": "1"}``). The client
    appends ``/embeddings`` to its base URL as a string, so a query string left in it mangles the path
    (``/v1/?api-key=Kembeddings``); passed as the client's default query it survives on every request."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment)), query


def redact_options(options: Any) -> Any:
    """Extractor options as they may be shown: URLs without credentials, secret-looking keys' values as ``***``."""
    if isinstance(options, dict):
        return {k: ("***" if isinstance(k, str) and SECRET_PARAMS.search(k) and v is not None else redact_options(v))
                for k, v in options.items()}
    if isinstance(options, (list, tuple)):
        return type(options)(redact_options(v) for v in options)
    if isinstance(options, str) and "://" in options:
        return redact_url(options)
    return options


def pack_requests(counts: List[int], max_inputs: int = MAX_INPUTS, max_tokens: int = MAX_REQUEST_TOKENS) -> List[List[int]]:
    """Greedy, order-keeping groups of input indices with <= max_inputs items and <= max_tokens tokens."""
    groups: List[List[int]] = []
    cur: List[int] = []
    total = 0
    for i, c in enumerate(counts):
        if cur and (len(cur) >= max_inputs or total + c > max_tokens):
            groups.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += c
    if cur:
        groups.append(cur)
    return groups


@FAMILIES.register("openai", modality="text")
class OpenAIExtractor(Extractor):
    family = "openai"
    modality = "text"

    def __init__(
        self,
        model_id: str,
        dimensions: Optional[int] = None,
        base_url: Optional[str] = None,
        max_retries: int = 6,
        backoff: float = 1.0,
        timeout: float = 60.0,
        encoding_format: Optional[str] = None,
        max_inputs_per_request: int = MAX_INPUTS,
        max_tokens_per_request: int = MAX_REQUEST_TOKENS,
        max_input_tokens: int = MAX_INPUT_TOKENS,
        api_key: Optional[str] = None,
    ):
        if api_key is not None:  # refused without echoing it: an option would land in manifests and logs
            raise ExtractorError(
                "openai: api_key is not an extractor option (options are stored in the manifest and shown in logs; "
                "the value you gave is not repeated here). Set OPENAI_API_KEY in the environment or in a .env file "
                "at the project root instead.")
        options: dict = {}
        if dimensions is not None:
            if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
                raise ValueError(f"openai: dimensions must be a positive integer, got {dimensions!r}")
            options["dimensions"] = int(dimensions)
        self._base_url = str(base_url) if base_url else None  # the real one (may hold credentials): requests only
        if base_url:
            options["base_url"] = redact_url(str(base_url))  # what the manifest, the slug and repr see
        super().__init__(model_id, **options)
        # transport settings: they do not change the vectors, so they are not part of the identity
        self.max_retries, self.backoff, self.timeout = int(max_retries), float(backoff), float(timeout)
        self.encoding_format = encoding_format
        self.max_inputs = min(int(max_inputs_per_request), MAX_INPUTS)
        self.max_request_tokens = int(max_tokens_per_request)
        self.max_input_tokens = int(max_input_tokens)
        self._client = None
        self.dim = int(dimensions) if dimensions else KNOWN_DIMS.get(model_id)
        self._seen_dim: Optional[int] = None  # width of the first answer (models of unknown size)
        self._secrets: List[str] = []
        self.requests_made = 0

    def _load(self, dev) -> None:
        """No model to load: the client is the model (created once; checks the API key)."""
        self._get_client()

    def _get_client(self):
        if self._client is not None:
            return self._client
        try:
            from openai import OpenAI
        except ImportError:
            raise ExtractorError("the openai family needs the openai package: pip install 'openai>=1.50'") from None
        from ..config import get_setting

        key = get_setting("OPENAI_API_KEY")
        self._secrets = [x for x in (key, self._base_url) if x]
        if self._base_url:
            parts = urlsplit(self._base_url)
            self._secrets += [x for x in (parts.password, parts.username) if x]
            self._secrets += [v for k, v in parse_qsl(parts.query) if SECRET_PARAMS.search(k)]
        if not key:
            if not self._base_url:
                raise ExtractorError(
                    "openai: no API key. Set OPENAI_API_KEY in the environment or in a .env file at the project "
                    "root (never in a notebook cell), or pass base_url=... for a compatible server without keys."
                )
            key = "unused"  # compatible servers often ignore the key; the client insists on one
        # retries are ours (so 401 is never retried and backoff is visible in the logs)
        guard_http_logs(self._secrets + ([key] if key != "unused" else []))
        base, query = split_query(self._base_url) if self._base_url else (None, {})
        self._client = OpenAI(api_key=key, base_url=base, default_query=query or None, max_retries=0,
                              timeout=self.timeout)
        return self._client

    def _request(self, batch: List[str]) -> np.ndarray:
        import openai

        client = self._get_client()
        kw: dict = {"model": self.model_id, "input": batch}
        if "dimensions" in self.options:
            kw["dimensions"] = self.options["dimensions"]
        if self.encoding_format:
            kw["encoding_format"] = self.encoding_format
        failure: Optional[str] = None
        for attempt in range(self.max_retries + 1):
            try:
                self.requests_made += 1
                resp = client.embeddings.create(**kw)
                return self._check_answer(resp, len(batch))
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                failure = (f"openai: the server refused the API key (HTTP {e.status_code}); not retrying. Check "
                           "OPENAI_API_KEY in the environment or .env (and base_url, if you set one).")
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                status = getattr(e, "status_code", None)
                if attempt == self.max_retries:
                    failure = (f"openai: giving up after {attempt + 1} attempts (last: HTTP {status or 'connection error'}"
                               f": {self._scrub(getattr(e, 'message', str(e)))}). Wait and run again: finished shards "
                               "are kept.")
                else:
                    wait = self.backoff * (2**attempt) * (1 + 0.1 * random.random())
                    retry_after = _retry_after(e)
                    if retry_after is not None:
                        wait = max(wait, retry_after) if retry_after > 0 else retry_after
                    log.warning("openai: HTTP %s, retrying in %.2f s (attempt %d of %d)", status or "connection error",
                                wait, attempt + 1, self.max_retries)
                    time.sleep(min(wait, 120.0))
                    continue
            except openai.APIStatusError as e:  # other 4xx: the request itself is wrong
                failure = f"openai: HTTP {e.status_code} for model {self.model_id!r}: {self._scrub(e.message)}"
            except openai.OpenAIError as e:  # anything else the client raises
                failure = f"openai: {type(e).__name__}: {self._scrub(str(e))}"
            break
        # raised here, outside the except blocks, so the client's exception (whose text may echo the key) is not
        # attached as __context__ for a traceback or an error tracker to print
        raise ExtractorError(failure or "openai: no answer")

    def _scrub(self, text: Any) -> str:
        return redact(str(text), getattr(self, "_secrets", []))

    def _check_answer(self, resp: Any, n: int) -> np.ndarray:
        """``[n, D]`` float32 from a response, after checking count, widths and values."""
        data = sorted(getattr(resp, "data", None) or [], key=lambda d: d.index)
        if len(data) != n or [d.index for d in data] != list(range(n)):
            raise ExtractorError(f"openai: asked for {n} embeddings, the server answered {len(data)} "
                                 f"(indexes {[d.index for d in data][:10]}); not using a partial answer")
        widths = sorted({len(d.embedding) if isinstance(d.embedding, (list, tuple)) else -1 for d in data})
        if widths == [-1] or -1 in widths:
            raise ExtractorError("openai: the server answered embeddings that are not lists of numbers")
        if len(widths) > 1:
            raise ExtractorError(f"openai: the server answered vectors of different widths {widths[:5]} in one "
                                 f"request for model {self.model_id!r}; a vector store needs one width")
        width = widths[0]
        want = self.options.get("dimensions") or KNOWN_DIMS.get(self.model_id) or self._seen_dim
        if want and width != want:
            why = ("dimensions=" + str(want)) if self.options.get("dimensions") else (
                f"the size of {self.model_id}" if KNOWN_DIMS.get(self.model_id) else "earlier answers")
            raise ExtractorError(f"openai: the server answered {width}-d vectors where {want}-d were expected "
                                 f"({why}); check the model name, dimensions and base_url")
        try:
            out = np.asarray([d.embedding for d in data], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ExtractorError(f"openai: the server answered values that are not numbers ({e})") from None
        self._seen_dim = width
        return out

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        self.load("cpu")
        tokens = _Tokens()
        texts = []
        for row, t in enumerate(items):
            text = "" if t is None else str(t)
            n = tokens.count(text)
            if n > self.max_input_tokens:
                log.warning("openai: row %d has about %d tokens; truncated to %d", row, n, self.max_input_tokens)
                text = tokens.truncate(text, self.max_input_tokens)
            texts.append(text if text.strip() else " ")  # the API rejects empty strings
        counts = [tokens.count(t) for t in texts]
        groups = pack_requests(counts, self.max_inputs, self.max_request_tokens)
        out: Optional[np.ndarray] = None
        for idx in progress(groups, desc=f"embed text ({self.model_id})", enabled=show_progress, unit="request"):
            vec = self._request([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
        assert out is not None
        return out


def _retry_after(err) -> Optional[float]:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
