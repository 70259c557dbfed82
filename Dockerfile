# One image for every service of the messaging backend; the container's
# command picks which one runs (msg-gateway, msg-ingest, msg-abuse-guard,
# msg-store, msg-fanout, msg-presence), and `msgctl bootstrap` creates
# streams, consumers and tables. The servers (NATS, PostgreSQL, Redis) run in
# their own containers, so the project is installed without extras: no
# [embedded] servers and no [bench] load generator (msgctl loadtest and bench
# say so; every other msgctl command works, see
# tests/tools/test_base_dependencies.py).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
COPY tools tools
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin messaging
COPY --from=build /install /usr/local
USER messaging
ENV PYTHONUNBUFFERED=1 \
    MSG_HTTP_HOST=0.0.0.0 \
    MSG_OPS_HOST=0.0.0.0
EXPOSE 8080 9100
CMD ["msg-gateway"]
