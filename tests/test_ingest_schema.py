"""schemathesis against the OpenAPI description the edge serves: generated requests that
fit it are answered as it says (204, or the documented 4xx), those that do not fit it are
refused, and nothing is ever a 500."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode

from contract.settings import Settings
from ingest.app import create_app
from tests.harness import CI, warm_idempotence

pytestmark = pytest.mark.kafka


def _body_only(case: schemathesis.Case) -> schemathesis.Case:
    case.query = {}
    case.headers = CaseInsensitiveDict()
    return case


def test_the_edge_keeps_to_its_openapi_description(topics: Settings) -> None:
    warm_idempotence(topics)
    schema = schemathesis.openapi.from_asgi("/openapi.yaml", create_app(topics))
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        strategies = [operation.as_strategy()]
        if operation.path.startswith("/callbacks/") and "{" not in operation.path:
            # Broken bodies. A query string or header is text whatever the schema says, so a
            # "negative" one is still a valid callback URL or an ignored header.
            negative = operation.as_strategy(GenerationMode.NEGATIVE)
            strategies.append(negative.map(_body_only))
        for strategy in strategies:

            @hypothesis_settings(
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=CI,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            @given(case=strategy)
            def check(case: schemathesis.Case) -> None:
                # A JSON value of another scalar type than the schema names is kept as its
                # text, as documented (providers send numbers unquoted), so a "negative"
                # JSON body with a numeric SID is rightly accepted: that one check is off.
                lenient = case.media_type == "application/json"
                excluded = [negative_data_rejection] if lenient else []
                # A GET callback's parameters are the kind's, in a query the document
                # cannot describe per kind: a generated one is rightly refused (no SID).
                if case.method == "GET":
                    excluded.append(positive_data_acceptance)
                case.call_and_validate(excluded_checks=excluded)

            check()
