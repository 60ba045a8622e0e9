"""JSON in and out, and nothing else.

The parser reads at most `API_MAX_BODY_BYTES` (a terminal's request is a few hundred
bytes), turns JSON numbers with a fraction into Decimal so that no float ever touches a
volume or a multiplier, and refuses NaN, Infinity and nesting deep enough to blow the
stack, each as a ParseError (400 VALIDATION_ERROR) rather than a 500.
"""

import codecs
import json
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer


def max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", 64 * 1024))


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not valid JSON.")


class StrictJSONParser(BaseParser):
    """application/json, bounded in size, decimals kept exact."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        limit = max_body_bytes()
        request = (parser_context or {}).get("request")
        meta = getattr(request, "META", {}) if request is not None else {}
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        # Refuse on the declared length before reading a byte; read one byte past the
        # limit otherwise, for bodies that lie about their length or do not give one.
        if declared > limit:
            raise RequestDataTooBig(f"The body is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestDataTooBig(f"The body is larger than {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError("Malformed JSON: nested too deeply.") from None


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Always answers JSON, whatever Accept says: the API has one representation, and a
    terminal sending `Accept: text/html` should still get its error in the spec's shape."""

    def select_parser(self, request: Any, parsers: list[BaseParser]) -> BaseParser | None:
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        for parser in parsers:
            if parser.media_type == content_type:
                return parser
        return None

    def select_renderer(
        self, request: Any, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = renderers[0]
        return renderer, renderer.media_type
