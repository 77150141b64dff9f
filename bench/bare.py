"""The yardstick: a FastAPI app with one GET returning a small JSON, and nothing of ours.

Every target is a ratio to it, measured in the same run by the same load generator. It lives
apart from `bench.apps` so that its process imports FastAPI alone: its memory and start-up are
the framework's, not our dependencies'.
"""

from fastapi import FastAPI


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare")
    async def answer() -> dict[str, str]:
        return {"status": "ok"}

    return app
