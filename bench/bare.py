"""The yardsticks: a FastAPI app with nothing of ours behind its routes.

- `GET /bare` returns a small JSON: the framework's floor for any request, for reference.
- `POST /bare/process` takes the body `/v1/text/process` takes and returns a fixed answer of the
  type it returns: FastAPI parsing, validating and serializing our contracts, and nothing else.
  The cache-hit targets are ratios to it, measured in the same run by the same load generator.
- Its start to first answer is the yardstick of our app's.

It lives apart from `bench.apps` so that its process imports FastAPI and the contracts alone:
its memory and start-up are the framework's, not our dependencies'.
"""

from fastapi import FastAPI
from shared.text import Operation, SentimentResult, TextProcessRequest, TextProcessResponse

ANSWER = TextProcessResponse(
    operation=Operation.SENTIMENT,
    result=SentimentResult(sentiment="positive", score=0.84, confidence=0.6),
    model="bare",
    cached=True,
    degraded=False,
    processing_time_ms=0.1,
)


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare")
    async def answer() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/process")
    async def process(body: TextProcessRequest) -> TextProcessResponse:
        return ANSWER.model_copy(update={"operation": body.operation})

    return app
