"""Request examples for the OpenAPI documents, one per case a reader wants to try.

Each is a complete request that succeeds as it is: `TestDocumentedExamples` sends every example
of both documents to the app and expects a 2xx.
"""

from typing import Any

from fastapi.openapi.models import Example

_ARTICLE = (
    "The city council approved a new budget for public transport on Monday. "
    "Bus fares will fall by ten percent from January, and two tram lines will run all night. "
    "Critics said the budget relies on a tax that has not been passed yet. "
    "The mayor expects ridership to grow by a fifth within two years."
)


def _example(summary: str, value: dict[str, Any]) -> Example:
    return Example(summary=summary, value=value)


PROCESS: dict[str, Example] = {
    "summarize": _example(
        "Summarize in two sentences",
        {"operation": "summarize", "text": _ARTICLE, "options": {"max_sentences": 2}},
    ),
    "sentiment": _example(
        "Positive, negative or neutral",
        {"operation": "sentiment", "text": "The new carriages are quiet, clean and on time."},
    ),
    "key_points": _example(
        "The three main points",
        {"operation": "key_points", "text": _ARTICLE, "options": {"max_points": 3}},
    ),
    "questions": _example(
        "Questions the text answers",
        {"operation": "questions", "text": _ARTICLE, "options": {"max_questions": 3}},
    ),
    "qa": _example(
        "Answer a question from the text",
        {"operation": "qa", "text": _ARTICLE, "question": "When will bus fares fall?"},
    ),
}

BATCH: dict[str, Example] = {
    "mixed": _example(
        "Three operations in one request",
        {
            "items": [
                {"operation": "summarize", "text": _ARTICLE, "options": {"max_sentences": 1}},
                {"operation": "sentiment", "text": "The night trams are a wonderful idea."},
                {"operation": "qa", "text": _ARTICLE, "question": "What did critics say?"},
            ]
        },
    ),
}

REGISTER: dict[str, Example] = {
    "register": _example(
        "A new account", {"email": "ada@example.com", "display_name": "Ada Lovelace"}
    ),
}

JOB: dict[str, Example] = {
    "sentiment": _example(
        "The sentiment of each review, with the caller's own ids",
        {
            "operation": "sentiment",
            "items": [
                {"id": "review-1", "text": "The new carriages are quiet, clean and on time."},
                {"id": "review-2", "text": "Three cancellations this week and no word why."},
            ],
        },
    ),
}

INVALIDATE: dict[str, Example] = {
    "one_operation": _example("Only the cached summaries", {"operation": "summarize"}),
    "everything": _example("Every cached answer", {}),
}
