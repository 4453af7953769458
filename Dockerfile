# One image for every Python service of compose.yaml (mock, ingest, api, worker, baseline, Locust);
# the `rq-dashboard` target adds RQ's web dashboard on top of it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the dependencies change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the code (kept in /app too: Locust runs `-f loadtests/locust/locustfile.py`).
COPY README.md ./
COPY system ./system
COPY sync_baseline ./sync_baseline
COPY mocks ./mocks
COPY loadtests ./loadtests
COPY reports ./reports
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 ragload \
    && mkdir -p /data && chown ragload /data
USER ragload
# Only used without QDRANT_URL (the embedded edge shard); compose sets QDRANT_URL.
ENV RAGLOAD_DATA_DIR=/data
EXPOSE 8000 8001 8100 8089
CMD ["ragload", "--help"]

FROM runtime AS rq-dashboard
USER root
# rq-dashboard 0.9.0 imports `six` without declaring it (checked: it fails to start without it).
RUN pip install rq-dashboard==0.9.0 six==1.17.0
USER ragload
EXPOSE 9181
CMD ["rq-dashboard", "--bind", "0.0.0.0", "--port", "9181"]
