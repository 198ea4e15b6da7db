"""Schemathesis hooks for the consumer API fuzz step of `./setup.sh test` (scripts/test.sh).

The consumer's OpenAPI document states every rule of a packet that JSON Schema can express
(types, ranges, patterns, "resource_id, seq and total all three or none"). Three rules relate a
value to something outside it, which no JSON Schema can state, so a schema-valid request may
rightly be answered 422 (as the document says):

- `sent_at` must lie within [received - MAX_MESSAGE_AGE, received + MAX_CLOCK_SKEW] of the
  moment the API receives the packet (a window that moves with the clock);
- `seq < total` (a relation between two fields);
- `from + size <= 10000` on `GET /messages` (a relation between two parameters);
- `text` holds at most 64 KiB of UTF-8: bytes, where JSON Schema's `maxLength` counts
  characters (the document says 65,536, exact for ASCII).

So that the positive checks test the API rather than the calendar, this hook moves generated
values that satisfy the schema into those windows just before each call: a well-formed
date-time string or integer `sent_at` becomes "now", a `seq >= total` becomes `total - 1`, a
`from` past the window is pulled back, a `text` of at most 65,536 characters but more bytes
is cut to 64 KiB. Nothing else is touched, and values of the wrong type or
shape stay as generated, so the negative checks keep testing the server's refusals.
Schemathesis re-checks each case after the hook, so a case counts as positive only if what is
really sent is schema-valid. The server is never weakened: tests that break these rules are in
consumer/tests (hostile.rs, errors.rs) and tests/tests/hostile_battery.rs.
"""

import datetime
import re

import schemathesis

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
MAX_WINDOW = 10_000
MAX_TEXT_BYTES = 64 * 1024
DEFAULT_PAGE = 20


def _int(value):
    """An integer as JSON Schema counts them: `415` or `415.0`."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _into_window(packet):
    if not isinstance(packet, dict):
        return
    sent_at = packet.get("sent_at")
    now = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(sent_at, str) and RFC3339.match(sent_at):
        packet["sent_at"] = now.isoformat()
    elif _int(sent_at):
        packet["sent_at"] = int(now.timestamp() * 1000)
    text = packet.get("text")
    if isinstance(text, str) and len(text) <= MAX_TEXT_BYTES < len(text.encode("utf-8", "surrogatepass")):
        packet["text"] = text.encode("utf-8", "surrogatepass")[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
    seq, total = packet.get("seq"), packet.get("total")
    if _int(seq) and _int(total) and 1 <= total <= 10_000 and total <= seq:
        packet["seq"] = int(total) - 1


def _page_into_window(query):
    if not isinstance(query, dict):
        return
    size, start = query.get("size", DEFAULT_PAGE), query.get("from")
    if _int(size) and _int(start) and 1 <= size <= 1000 and 0 <= start and start + size > MAX_WINDOW:
        query["from"] = MAX_WINDOW - int(size)


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = (case.method.upper(), case.path)
    if operation == ("POST", "/messages"):
        _into_window(case.body)
    elif operation == ("POST", "/messages/batch") and isinstance(case.body, list):
        for packet in case.body:
            _into_window(packet)
    elif operation == ("GET", "/messages"):
        _page_into_window(case.query)
