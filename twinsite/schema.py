"""OpenAPI schema fixes: document the error answers every operation can give.

drf-spectacular documents what a view declares, which is mostly its success. But any operation can
answer 401 (no or bad token), 403 (not allowed, or a session request without its CSRF token),
429 (throttled, or over a quota) and 503 (database or storage down), one naming an object can
answer 404, one taking input 400. All in the one error shape of twinsite/errors.py. Schema
fuzzing (tests/reliability/test_schemathesis.py) holds every response to this schema.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        },
        "results": {
            "type": "array",
            "description": "Per-file verdicts of an upload that was refused as a whole.",
            "items": {"type": "object"},
        },
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
DESCRIPTIONS = {
    "400": "Invalid input.",
    "401": "No valid credentials.",
    "403": "Not allowed (for a session: also a missing CSRF token).",
    "404": "Not found, or not yours.",
    "409": "Conflicts with the object's current state.",
    "413": "Too large.",
    "415": "Not a supported type.",
    "429": "Throttled, or over a quota (see Retry-After).",
    "503": "The database or the storage is unavailable; try again shortly.",
}
ALWAYS = ("401", "403", "429", "503")
WITH_INPUT = ("400",)
WITH_PATH_OBJECT = ("404",)


def _error_response(code: str) -> dict[str, Any]:
    return {"description": DESCRIPTIONS.get(code, "Error."), "content": {"application/json": {"schema": ERROR_REF}}}


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = operation.get("parameters", [])
            codes = list(ALWAYS)
            if any(p.get("in") == "path" for p in parameters):
                codes += WITH_PATH_OBJECT
            if "requestBody" in operation or any(p.get("in") == "query" for p in parameters) or method != "get":
                codes += WITH_INPUT
            responses = operation["responses"]
            for code in codes:
                responses.setdefault(code, _error_response(code))
            for code, response in responses.items():
                # An error the view declared without a body (`409: None`) still has the error body.
                if code.startswith(("4", "5")) and not response.get("content"):
                    responses[code] = {
                        **_error_response(code),
                        **{k: v for k, v in response.items() if k != "content" and v},
                    }
    return result
