"""The floor for HTTP overhead: a bare FastAPI endpoint returning a constant, served the same way."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/score")
async def score() -> dict[str, object]:
    return {"risk_score": 0.5, "recommendation": "approve"}
