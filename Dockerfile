# The API image: the same `make install` as a laptop (torch CPU wheel first, then the project pinned
# to it), then `specialist serve`. The model runs in the vllm service; Qdrant in the qdrant service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    OMP_WAIT_POLICY=PASSIVE \
    TOKENIZERS_PARALLELISM=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt Makefile README.md ./
COPY specialist ./specialist
COPY agent ./agent
COPY retrieval ./retrieval
COPY ingest ./ingest
COPY finetune ./finetune
COPY serve ./serve
RUN make install

ENV SPECIALIST_SERVE__HOST=0.0.0.0 \
    SPECIALIST_SERVE__PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=12 \
    CMD [".venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD [".venv/bin/specialist", "serve"]
