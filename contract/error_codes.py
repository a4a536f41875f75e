"""SignalWire (Twilio-compatible) error codes and what they mean, named once.

Reports, `switchboard tail`, the dashboard and the exports show a code with its
meaning from this table. The first ten are the ones campaigns meet most.
"""

from __future__ import annotations

ERROR_CODES: dict[str, str] = {
    "30003": "unreachable handset",
    "30004": "blocked",
    "30005": "unknown handset",
    "30006": "landline or unreachable carrier",
    "30007": "carrier filtered",
    "30008": "unknown error",
    "30022": "10DLC rate limit",
    "30027": "T-Mobile daily cap",
    "21610": "recipient opted out",
    "11200": "webhook timeout",
    # less frequent, still well known
    "30001": "queue overflow",
    "30002": "account suspended",
    "30009": "missing segment",
    "30010": "price exceeds max price",
    "30023": "10DLC daily cap",
    "30032": "toll-free number not verified",
    "30034": "10DLC unregistered number",
    "21211": "invalid 'To' number",
    "21408": "region not enabled",
    "21612": "'To' not reachable by SMS",
    "21614": "'To' is not a mobile number",
    "11205": "webhook connection failure",
    "11750": "webhook response too large",
    "13224": "invalid dial number",
}

UNKNOWN = "unlisted code"


def meaning(code: object) -> str:
    """`"30003"` -> `"unreachable handset"`; no code -> `""`; a code not listed -> UNKNOWN."""
    if code is None or str(code).strip() == "":
        return ""
    return ERROR_CODES.get(str(code).strip(), UNKNOWN)
